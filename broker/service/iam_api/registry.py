"""What an IAM API action is: its name (``iam:<Name>`` is the permission it needs), the ARN it
acts on, and a coroutine from the model-checked parameters to the result members.

Action modules (``users``, ``groups``, ...) each export ``ACTIONS``; ``IamApi`` collects them.
A result is a dict of the operation's output members, named as in botocore's model (the web
layer serialises it; a member the model does not define is a programming error).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from broker.service.audit import RequestInfo
from broker.service.verified import Credential

if TYPE_CHECKING:
    from broker.service.iam_api.api import IamApi

Params = Mapping[str, Any]
Result = dict[str, Any]

ROOT_ACTOR = "root"


@dataclass(frozen=True)
class Caller:
    """Who calls: a broker credential (SigV4), or the account root (``credential`` None: the
    local ``broker admin`` on the server host, allowed everything, audited as ``root``)."""

    arn: str
    actor: str
    credential: Credential | None = None

    @property
    def is_root(self) -> bool:
        return self.credential is None


@dataclass(frozen=True)
class Call:
    api: IamApi
    caller: Caller
    params: Params
    req: RequestInfo

    @property
    def actor(self) -> str:
        return self.caller.actor

    def arn(self, kind: str, name: str) -> str:
        return self.api.settings.arn(kind, name)


Resource = Callable[[Call], str]


@dataclass(frozen=True)
class Action:
    name: str
    run: Callable[[Call], Awaitable[Result]]
    resource: Resource
    mutates: bool = True
    page: str | None = None  # the result's list member that ``Marker``/``MaxItems`` page
    # the action authorizes itself (its resource is known only once it has looked it up)
    authorize_in_run: bool = False


def named(kind: str, param: str) -> Resource:
    """The ARN of the ``kind`` named by parameter ``param`` (e.g. ``user``, ``UserName``)."""

    def resource(call: Call) -> str:
        return call.arn(kind, str(call.params.get(param, "")))

    return resource


def given_arn(param: str) -> Resource:
    """The ARN given as parameter ``param`` (``PolicyArn``, ``OpenIDConnectProviderArn``)."""

    def resource(call: Call) -> str:
        return str(call.params.get(param, ""))

    return resource


def anything(_: Call) -> str:
    """Actions on no one resource (``List*`` of everything, account summaries): ``*``."""
    return "*"
