"""The ``broker`` command (contract C5). Every command has --help, exits non-zero with one clear
line on error, and prints JSON with --json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from broker.config import DEFAULT_CONFIG_PATH, Settings, load_settings
from broker.errors import BrokerError, ConfigError


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        default=os.environ.get("BROKER_CONFIG", str(DEFAULT_CONFIG_PATH)),
        help="path of the TOML config file (default: $BROKER_CONFIG or config/broker.toml)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config)


async def _with_broker(settings: Settings, fn: Callable[[Any], Awaitable[Any]]) -> Any:
    import aiohttp

    from broker.service.container import Broker

    async with aiohttp.ClientSession() as http:
        broker = await Broker.open(settings, http=http, bootstrap=False)
        try:
            return await fn(broker)
        finally:
            await broker.close()


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from broker.logs import setup_logging
    from broker.web.app import create_app

    settings = _settings(args)
    setup_logging(settings.log_level)
    s = settings.server
    web.run_app(
        create_app(settings),
        host=s.listen_host,
        port=s.listen_port,
        print=lambda _: print(
            f"broker listening on {s.listen_host}:{s.listen_port}; public URL {s.public_url}",
            flush=True,
        ),
        access_log=None,
    )
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    from broker.service.container import startup_problems

    settings = _settings(args)
    problems = startup_problems(settings)
    if problems:
        raise ConfigError(problems)
    _out(
        args,
        {
            "ok": True,
            "providers": sorted(settings.providers),
            "roles": sorted(settings.roles),
            "policies": sorted(settings.policies),
        },
        f"{args.config}: OK ({len(settings.providers)} providers, {len(settings.roles)} roles, "
        f"{len(settings.policies)} policies)",
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from broker.storage import migrate

    settings = _settings(args)
    db = settings.sqlite_path
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(migrate(settings.store.url))
    _out(args, {"ok": True}, "the store's schema is up to date")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    async def run(broker: Any) -> str:
        return str(await broker.rotate_keys(reason="cli"))

    kid = asyncio.run(_with_broker(_settings(args), run))
    _out(
        args,
        {"kid": kid},
        f"new signing key {kid}; the previous key stays in the JWKS until "
        "the tokens it signed expire",
    )
    return 0


def cmd_audit_list(args: argparse.Namespace) -> int:
    async def run(broker: Any) -> Any:
        return await broker.store.list_audit(limit=args.limit, action=args.action)

    events = asyncio.run(_with_broker(_settings(args), run))
    rows = [
        {
            "time": datetime.fromtimestamp(e.time, UTC).isoformat(),
            "action": e.action,
            "outcome": e.outcome,
            "principal": e.principal,
            "reason": e.reason,
            "source_ip": e.source_ip,
            "request_id": e.request_id,
            "details": dict(e.details),
        }
        for e in events
    ]
    text = "\n".join(
        f"{r['time']}  {r['action']:<16} {r['outcome']:<8} {r['principal'] or '-'}  "
        f"{r['reason'] or ''}"
        for r in rows
    )
    _out(args, rows, text or "no audit events")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="broker", description="A federated identity token broker."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the broker")
    _config_arg(p)
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("check-config", help="validate the config file and its policies")
    _config_arg(p)
    p.set_defaults(fn=cmd_check_config)

    p = sub.add_parser("migrate", help="bring the store's schema up to date")
    _config_arg(p)
    p.set_defaults(fn=cmd_migrate)

    keys = sub.add_parser("keys", help="signing keys").add_subparsers(
        dest="keys_command", required=True, metavar="VERB"
    )
    p = keys.add_parser("rotate", help="make a new signing key current now")
    _config_arg(p)
    p.set_defaults(fn=cmd_keys_rotate)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="audit_command", required=True, metavar="VERB"
    )
    p = audit.add_parser("list", help="recent audit events, newest first")
    _config_arg(p)
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--action", help="only this action, e.g. login")
    p.set_defaults(fn=cmd_audit_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.fn(args)
        return code
    except ConfigError as e:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "problems": e.problems}, indent=2))
        else:
            print(f"broker: the configuration has {len(e.problems)} problem(s):", file=sys.stderr)
            for p in e.problems:
                print(f"  - {p}", file=sys.stderr)
        return 2
    except BrokerError as e:
        print(f"broker: {e.public_message} ({e.reason})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
