"""The person-at-a-terminal commands (issue 14, docs/cli.md): ``broker login``, ``logout``,
``roles``, ``credentials``, ``exec`` and ``token``. They need no server config, only the
broker's URL; progress and prompts go to stderr, data to stdout."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from broker.cli_cache import (
    ACCESS_MARGIN,
    ROLE_MARGIN,
    Cache,
    ClientError,
    NotSignedIn,
    resolve_url,
)
from broker.cli_oauth import (
    Reply,
    claims,
    credentials_accepted,
    discover,
    login_device,
    login_loopback,
    refresh,
    request,
    revoke,
    stderr,
    tokens_from,
)

CREDENTIAL_KEYS = ("Version", "AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration")
SECRET_KEYS = ("AccessKeyId", "SecretAccessKey", "SessionToken")


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)


def _endpoints(url: str, data: dict[str, Any]) -> dict[str, str]:
    found = data.get("endpoints")
    if isinstance(found, dict) and "token_endpoint" in found:
        return found
    return discover(url)


def _signed_in(url: str, cache: Cache, *, force: bool = False) -> dict[str, Any]:
    """The cache with a live access token, refreshed (and saved) when it is about to expire or
    ``force``. Call it under ``cache.locked()``."""
    data = cache.load()
    if not data or not isinstance(data.get("refresh_token"), str):
        raise NotSignedIn(url)
    now = time.time()
    if force or float(data.get("expires_at", 0)) - ACCESS_MARGIN <= now:
        endpoints = _endpoints(url, data)
        try:
            data.update(refresh(url, endpoints, data["refresh_token"], now))
        except NotSignedIn:
            cache.delete()  # a refused refresh token is dead: never send it again
            raise
        data["endpoints"] = endpoints
        cache.save(data)
    return data


def _call(url: str, cache: Cache, method: str, path: str, **kw: Any) -> Reply:
    """A request with the access token; a 401 refreshes once (the token may have been ended
    early, e.g. by a key rotation), a second 401 means the sign-in is over."""
    data = _signed_in(url, cache)
    reply = request(method, url + path, bearer=data["access_token"], **kw)
    if reply.status == 401:
        data = _signed_in(url, cache, force=True)
        reply = request(method, url + path, bearer=data["access_token"], **kw)
        if reply.status == 401:
            raise NotSignedIn(url)
    return reply


def _expiration(creds: dict[str, Any]) -> float:
    try:
        return datetime.fromisoformat(str(creds["Expiration"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return 0.0


def role_credentials(url: str, role: str, duration: int | None = None) -> dict[str, Any]:
    """The role's credentials: from the cache until 5 minutes before they expire (once the
    broker confirms it still accepts them), else new ones from the broker. Under the lock,
    so parallel callers fetch (and refresh) once."""
    cache = Cache(url)
    with cache.locked():
        data = cache.load()
        cached = ((data or {}).get("roles") or {}).get(role)
        # Never hand out credentials the broker has ended: they die with the sign-in, and with
        # the role's or the user's revocation. Refused: new ones (below), for which the sign-in
        # must still hold.
        if (
            isinstance(cached, dict)
            and all(isinstance(cached.get(k), str) for k in SECRET_KEYS)
            and (duration is None or cached.get("duration") == duration)
            and _expiration(cached) - ROLE_MARGIN > time.time()
            and credentials_accepted(url, cached)
        ):
            return {k: cached[k] for k in CREDENTIAL_KEYS}
        body: dict[str, Any] = {"role": role}
        if duration is not None:
            body["duration_seconds"] = duration
        reply = _call(url, cache, "POST", "/v1/credentials", body=body)
        if reply.status != 200:
            if reply.error == "access_denied":
                raise ClientError(f"{url} refused the role {role!r}: {reply.describe()}")
            raise ClientError(f"{url} gave no credentials for {role!r}: {reply.describe()}")
        missing = [k for k in CREDENTIAL_KEYS if k not in reply.body]
        if missing:
            raise ClientError(f"{url}'s credentials for {role!r} lack {', '.join(missing)}")
        creds = {k: reply.body[k] for k in CREDENTIAL_KEYS}
        data = cache.load() or {}  # as _call may have refreshed it
        data.setdefault("roles", {})[role] = {**creds, "duration": duration}
        cache.save(data)
        return creds


# --- the commands ---------------------------------------------------------------------------------


def cmd_login(args: argparse.Namespace) -> int:
    url = resolve_url(args.url)
    cache = Cache(url)
    endpoints = discover(url)
    if args.device:
        reply = login_device(url, endpoints, say=stderr)
    else:
        reply = login_loopback(url, endpoints, open_browser=not args.no_browser, say=stderr)
    if reply.status != 200:
        raise ClientError(f"{url} refused the sign-in: {reply.describe()}")
    tokens = tokens_from(reply, time.time())
    with cache.locked():
        try:
            before = cache.load() or {}
        except ClientError:
            before = {}  # unreadable (e.g. wrong mode): replaced below by a private file
        cache.save({**tokens, "endpoints": endpoints, "roles": {}})
        cache.remember()
    if isinstance(before.get("refresh_token"), str):
        # signing in again ends the previous CLI session rather than leaving it alive unseen
        try:
            revoke(endpoints, before["refresh_token"])
        except ClientError as e:
            stderr(f"broker: warning: the previous sign-in was not ended at {url}: {e}")
    who = claims(tokens["access_token"])
    name = who.get("preferred_username") or who.get("email") or who.get("sub") or "?"
    expires = datetime.fromtimestamp(tokens["expires_at"], UTC).isoformat(timespec="seconds")
    _print(
        args,
        {"url": url, "signed_in": True, "subject": who.get("sub"), "cache": str(cache.path)},
        f"signed in to {url} as {name} (access token until {expires}, refreshed as needed)",
    )
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    url = resolve_url(args.url)
    cache = Cache(url)
    with cache.locked():
        data = cache.load()
        revoked = False
        if data and isinstance(data.get("refresh_token"), str):
            # the local copy goes whatever the broker answers: the user asked to sign out
            try:
                reply = revoke(_endpoints(url, data), data["refresh_token"])
                revoked, why = reply.status == 200, reply.describe()
            except ClientError as e:
                why = str(e)
            if not revoked:
                stderr(f"broker: warning: {url} did not confirm the logout: {why}")
        deleted = cache.delete()
    _print(
        args,
        {"url": url, "revoked": revoked, "deleted": deleted},
        f"signed out of {url}" if deleted else f"not signed in to {url}: nothing to do",
    )
    return 0


def cmd_roles(args: argparse.Namespace) -> int:
    url = resolve_url(args.url)
    cache = Cache(url)
    with cache.locked():
        reply = _call(url, cache, "GET", "/v1/roles")
    roles = reply.body.get("roles")
    if reply.status != 200 or not isinstance(roles, list):
        raise ClientError(f"{url} listed no roles: {reply.describe()}")
    rows = [r for r in roles if isinstance(r, dict)]
    width = max([len("NAME"), *(len(str(r.get("name", ""))) for r in rows)])
    lines = [f"{'NAME':<{width}}  DESCRIPTION"] + [
        f"{r.get('name', ''):<{width}}  {r.get('description') or ''}" for r in rows
    ]
    text = "\n".join(lines) if rows else f"no role at {url} trusts you"
    _print(args, {"url": url, "roles": rows}, text)
    return 0


def cmd_credentials(args: argparse.Namespace) -> int:
    creds = role_credentials(resolve_url(args.url), args.role, args.duration)
    print(json.dumps(creds, indent=2))  # credential_process JSON, with or without --json
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    url = resolve_url(args.url)
    if args.role:
        token = str(role_credentials(url, args.role)["SessionToken"])
    else:
        cache = Cache(url)
        with cache.locked():
            token = str(_signed_in(url, cache)["access_token"])
    _print(args, {"url": url, "role": args.role, "token": token}, token)
    return 0


def cmd_exec(args: argparse.Namespace) -> int:
    command = list(args.cmd)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ClientError("no command to run: broker exec --role NAME -- CMD [ARG...]")
    creds = role_credentials(resolve_url(args.url), args.role)
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE")}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": str(creds["AccessKeyId"]),
            "AWS_SECRET_ACCESS_KEY": str(creds["SecretAccessKey"]),
            "AWS_SESSION_TOKEN": str(creds["SessionToken"]),
            "AWS_CREDENTIAL_EXPIRATION": str(creds["Expiration"]),
        }
    )
    try:
        code = subprocess.call(command, env=env)  # noqa: S603 (the user's own command)
    except OSError as e:
        print(f"broker: cannot run {command[0]}: {e.strerror or e}", file=sys.stderr)
        return 127
    return 128 - code if code < 0 else code  # killed by a signal: as a shell reports it


# --- argparse -------------------------------------------------------------------------------------


def _url_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        metavar="URL",
        help="the broker (default: $BROKER_URL, else the URL of the last `broker login`)",
    )


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def add_client_commands(sub: Any) -> None:
    p = sub.add_parser(
        "login",
        help="sign in to a broker from this terminal (no server config needed)",
        description="Sign in through the browser (a loopback redirect with PKCE) or, with "
        "--device, with a code to enter in a browser on any device. The tokens go to "
        "$XDG_CONFIG_HOME/broker/ (default ~/.config/broker/), readable only by you.",
    )
    _url_arg(p)
    p.add_argument("--device", action="store_true", help="sign in with a code (headless hosts)")
    p.add_argument(
        "--no-browser",
        action="store_true",
        help="print the sign-in URL on stderr instead of opening a browser",
    )
    _json_arg(p)
    p.set_defaults(fn=cmd_login)

    p = sub.add_parser("logout", help="end this terminal's sign-in at the broker and forget it")
    _url_arg(p)
    _json_arg(p)
    p.set_defaults(fn=cmd_logout)

    p = sub.add_parser("roles", help="the roles you may take, as signed in with `broker login`")
    _url_arg(p)
    _json_arg(p)
    p.set_defaults(fn=cmd_roles)

    p = sub.add_parser(
        "credentials",
        help="a role's credentials as AWS credential_process JSON",
        description="Prints {Version, AccessKeyId, SecretAccessKey, SessionToken, Expiration} "
        "for `credential_process = broker credentials --role NAME --url URL` in ~/.aws/config. "
        "Cached until 5 minutes before they expire.",
    )
    p.add_argument("--role", required=True, metavar="NAME", help="the role (see `broker roles`)")
    p.add_argument(
        "--duration",
        type=int,
        metavar="SECONDS",
        help="their lifetime, 900 up to the role's maximum (default: the broker's)",
    )
    _url_arg(p)
    _json_arg(p)
    p.set_defaults(fn=cmd_credentials)

    p = sub.add_parser(
        "exec",
        help="run a command with a role's credentials in its environment",
        description="Runs CMD with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN "
        "and AWS_CREDENTIAL_EXPIRATION set (for it alone) and exits with its exit code.",
    )
    p.add_argument("--role", required=True, metavar="NAME", help="the role (see `broker roles`)")
    _url_arg(p)
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]")
    p.set_defaults(fn=cmd_exec)

    p = sub.add_parser(
        "token",
        help="your access token, or with --role the role's bearer token (for curl)",
    )
    p.add_argument("--role", metavar="NAME", help="the role's token instead of your own")
    _url_arg(p)
    _json_arg(p)
    p.set_defaults(fn=cmd_token)
