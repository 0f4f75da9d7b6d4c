"""Login profiles: a local user's password for browser login (``/login/local``), with AWS's
must-change flag (``PasswordResetRequired``: the next login asks for a new password).

Only users of the local provider can have one (``InvalidInput`` for a federated user, who signs
in at its provider). Passwords are hashed with argon2 off the event loop
(``PasswordHashing``), never logged, audited or returned; a password breaking the broker's
rules (``broker.service.passwords.password_problem``: at least 12 characters, not the user
name) is ``PasswordPolicyViolation``. Deleting the profile stops password logins; as in AWS it
does not end sessions already open (``DeleteUser`` or ``broker admin users disable`` do).
The profile's ``CreateDate`` is the user's (the store keeps no separate date).
"""

from __future__ import annotations

from broker.errors import (
    IamEntityAlreadyExists,
    IamInvalidInput,
    IamNoSuchEntity,
    IamPasswordPolicyViolation,
    IamServiceFailure,
    IamValidationError,
)
from broker.service.iam_api import escalation
from broker.service.iam_api.principals import user_named
from broker.service.iam_api.registry import Action, Call, Result, named
from broker.service.iam_api.users import is_local, user_name
from broker.service.passwords import password_problem
from broker.storage.base import User


def _no_profile(user: User) -> IamNoSuchEntity:
    return IamNoSuchEntity(
        f"no_login_profile:{user.name}",
        public_message=f"Login Profile for User {user.name} cannot be found.",
    )


async def _hash(call: Call, user: User, password: str) -> str:
    problem = password_problem(password, username=user.name)
    if problem is not None:
        raise IamPasswordPolicyViolation(
            "weak_password", public_message=f"Password does not conform to policy: {problem}"
        )
    if call.api.hashing is None:
        raise IamServiceFailure("no_password_hashing")
    return await call.api.hashing.hash(password)


def _profile(user: User, reset: bool) -> dict[str, object]:
    return {"UserName": user.name, "CreateDate": user.created_at, "PasswordResetRequired": reset}


async def create_login_profile(call: Call) -> Result:
    user = await user_named(call, user_name(call))
    # a password for a user is a way to act as that user: only under the caller's boundary
    await escalation.require_bounded_target(call, "user", user.id, user.name)
    password = call.params.get("Password")
    if password is None:
        raise IamValidationError(
            "password_required", public_message="A password is required (Password)."
        )
    if not is_local(call, user):
        raise IamInvalidInput(
            f"not_a_local_user:{user.name}",
            public_message=f"User {user.name} signs in with its identity provider "
            f"({user.provider}); only local users can have a login profile.",
        )
    if user.password_hash is not None:
        raise IamEntityAlreadyExists(
            f"login_profile_exists:{user.name}",
            public_message=f"Login Profile for user {user.name} already exists.",
        )
    reset = bool(call.params.get("PasswordResetRequired", False))
    new_hash = await _hash(call, user, password)
    await _audit(call, "CreateLoginProfile", user, reset)
    if not await call.api.store.create_password(
        user.id, new_hash, must_change=reset, now=call.api.clock.now()
    ):
        raise IamEntityAlreadyExists(  # a concurrent CreateLoginProfile was first
            f"login_profile_exists:{user.name}",
            public_message=f"Login Profile for user {user.name} already exists.",
        )
    return {"LoginProfile": _profile(user, reset)}


async def get_login_profile(call: Call) -> Result:
    user = await user_named(call, user_name(call))
    if user.password_hash is None:
        raise _no_profile(user)
    return {"LoginProfile": _profile(user, user.must_change_password)}


async def update_login_profile(call: Call) -> Result:
    user = await user_named(call, user_name(call))
    await escalation.require_bounded_target(call, "user", user.id, user.name)
    if user.password_hash is None:
        raise _no_profile(user)
    reset = bool(call.params.get("PasswordResetRequired", user.must_change_password))
    password = call.params.get("Password")
    new_hash = None if password is None else await _hash(call, user, password)
    await _audit(call, "UpdateLoginProfile", user, reset, password_changed=password is not None)
    if not await call.api.store.update_password(
        user.id, new_hash, must_change=reset, now=call.api.clock.now()
    ):
        raise _no_profile(user)  # deleted meanwhile: not brought back
    return {}


async def delete_login_profile(call: Call) -> Result:
    user = await user_named(call, user_name(call))
    if user.password_hash is None:
        raise _no_profile(user)
    await _audit(call, "DeleteLoginProfile", user, False)
    if not await call.api.store.clear_password(user.id):
        raise _no_profile(user)
    return {}


async def _audit(
    call: Call, action: str, user: User, reset: bool, *, password_changed: bool = True
) -> None:
    await call.api.auditor.record_or_fail(
        f"iam.{action}",
        "success",
        req=call.req,
        principal=call.actor,
        details={
            "user": user.id,
            "name": user.name,
            "password_reset_required": reset,
            "password_changed": password_changed,
        },
    )


ACTIONS = (
    Action("CreateLoginProfile", create_login_profile, named("user", "UserName")),
    Action("GetLoginProfile", get_login_profile, named("user", "UserName"), mutates=False),
    Action("UpdateLoginProfile", update_login_profile, named("user", "UserName")),
    Action("DeleteLoginProfile", delete_login_profile, named("user", "UserName")),
)
