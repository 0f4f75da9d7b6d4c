"""``broker admin access-keys create|list|update|delete USER ...``: IAM users' long-lived access
keys, through the IAM API's own actions (``IamApi.call``) as the account root, audited with the
operator's login name (``root/cli:<user>``). ``create`` prints the secret once; nothing prints
it again."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from broker.cli_admin import Result, _actor, _iso, _run, _verb

if TYPE_CHECKING:
    from broker.service.container import Broker
    from broker.service.iam_api import Caller

KEY_USER = "user:the user's IAM name or ARN (arn:broker:iam::<account>:user/<name>)"
KEY_ID = "key:the access key id (AKIA...)"


def _user(ref: str) -> str:
    return ref.rsplit(":user/", 1)[-1] if ref.startswith("arn:") else ref


def _root(b: Broker) -> Caller:
    from broker.service.iam_api import Caller

    root = b.iam_api.root()
    return Caller(arn=root.arn, actor=_actor())


async def _create(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    out = await b.iam_api.call(_root(b), "CreateAccessKey", {"UserName": _user(a.user)})
    key = out["AccessKey"]
    data = {
        "user": key["UserName"],
        "access_key_id": key["AccessKeyId"],
        "secret_access_key": key["SecretAccessKey"],
        "status": key["Status"],
    }
    text = (
        f"AccessKeyId:     {key['AccessKeyId']}\n"
        f"SecretAccessKey: {key['SecretAccessKey']}\n"
        "The secret is not shown again: store it now (e.g. aws configure)."
    )
    return data, text


async def _list(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    root = _root(b)
    out = await b.iam_api.call(root, "ListAccessKeys", {"UserName": _user(a.user)})
    rows: list[dict[str, Any]] = []
    for k in out["AccessKeyMetadata"]:
        used = await b.iam_api.call(root, "GetAccessKeyLastUsed", {"AccessKeyId": k["AccessKeyId"]})
        last = used["AccessKeyLastUsed"]
        rows.append(
            {
                "access_key_id": k["AccessKeyId"],
                "status": k["Status"],
                "created_at": _iso(k["CreateDate"]),
                "last_used_at": _iso(last.get("LastUsedDate")),
                "last_used_region": last["Region"],
                "last_used_service": last["ServiceName"],
            }
        )
    text = "\n".join(
        f"{r['access_key_id']}  {r['status']:<8}  created {r['created_at']}  last used "
        f"{r['last_used_at'] or 'never'} ({r['last_used_service']}, {r['last_used_region']})"
        for r in rows
    )
    return rows, text or "no access keys"


async def _update(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    params = {"UserName": _user(a.user), "AccessKeyId": a.key, "Status": a.status}
    await b.iam_api.call(_root(b), "UpdateAccessKey", params)
    return {"ok": True}, f"{a.key} is {a.status}"


async def _delete(b: Broker, a: argparse.Namespace, actor: str) -> Result:
    params = {"UserName": _user(a.user), "AccessKeyId": a.key}
    await b.iam_api.call(_root(b), "DeleteAccessKey", params)
    return {"ok": True}, f"{a.key} deleted"


def add_access_key_commands(admin: Any) -> None:
    # ``IamApi.call`` audits refusals and tells running brokers of changes itself: no operation
    # name for ``_run`` (it would audit and announce them twice).
    keys = admin.add_parser("access-keys", help="IAM users' access keys").add_subparsers(
        dest="access_keys_verb", required=True, metavar="VERB"
    )
    _verb(
        keys,
        "create",
        "create an access key for a user (at most two); the secret is printed once",
        _run(None, _create),
        KEY_USER,
    )
    _verb(keys, "list", "list a user's access keys and their last use", _run(None, _list), KEY_USER)
    p = _verb(
        keys,
        "update",
        "make a key Active or Inactive (an Inactive key is refused on every instance within 2 s)",
        _run(None, _update),
        KEY_USER,
        KEY_ID,
    )
    p.add_argument(
        "status", choices=("Active", "Inactive"), metavar="STATUS", help="Active or Inactive"
    )
    _verb(keys, "delete", "delete an access key", _run(None, _delete), KEY_USER, KEY_ID)
