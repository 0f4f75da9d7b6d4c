"""The ``broker`` command (contract C5). Every command has --help, exits non-zero with one clear
line on error, and prints JSON with --json."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from broker.cli_access_keys import add_access_key_commands
from broker.cli_admin import add_admin_commands, common_args, read_text_file
from broker.cli_audit import cmd_audit_verify
from broker.cli_cache import ClientError
from broker.cli_login import add_client_commands
from broker.cli_report import add_report_commands
from broker.cli_review import add_policy_commands, add_report_unused
from broker.config import DEFAULT_CONFIG_PATH, Settings, load_settings
from broker.errors import BrokerError, ConfigError, InvalidRequest

log = logging.getLogger("broker.serve")


def out(args: argparse.Namespace, data: Any, text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)


def _settings(args: argparse.Namespace) -> Settings:
    path = Path(args.config)
    if not path.exists():
        raise ConfigError(
            [
                f"{path.absolute()}: cannot read the config file (it does not exist). Give its "
                "path with --config PATH or BROKER_CONFIG=PATH; the default is "
                "config/broker.toml in the current directory."
            ]
        )
    return load_settings(path)


async def with_broker(settings: Settings, fn: Callable[[Any], Awaitable[Any]]) -> Any:
    import aiohttp

    from broker.service.container import Broker

    async with aiohttp.ClientSession() as http:
        broker = await Broker.open(settings, http=http, bootstrap=False)
        try:
            return await fn(broker)
        finally:
            await broker.close()


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else happens: a busy port must fail before
    the first start's one-time admin password is created and printed (it is shown only once)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)


def _listen_arg(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8001)")
    return host.strip("[]") or "127.0.0.1", int(port)


def _workers_arg(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of workers (1 or more)")
    return int(value)


def _serve_settings(args: argparse.Namespace) -> Settings:
    """The config, with ``--listen`` applied."""
    settings = _settings(args)
    if args.listen is not None:
        host, port = args.listen
        s = settings.server
        # A public URL that is just the configured address follows the new one.
        public_url = s.public_url
        if public_url == f"http://{s.listen_host}:{s.listen_port}":
            public_url = f"http://{host}:{port}"
        server = dataclasses.replace(s, listen_host=host, listen_port=port, public_url=public_url)
        settings = dataclasses.replace(settings, server=server)
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from broker.logs import setup_logging
    from broker.runtime import tune_for_serving
    from broker.supervisor import default_workers
    from broker.web.app import create_app

    settings = _serve_settings(args)
    try:
        workers = args.workers or default_workers()
    except ValueError as e:
        print(f"broker: {e}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    s = settings.server
    try:
        sock = _bind(s.listen_host, s.listen_port)
    except OSError as e:
        print(
            f"broker: cannot listen on {s.listen_host}:{s.listen_port}: "
            f"{e.strerror or e}. Choose another address with --listen HOST:PORT "
            "or [server] listen in the config.",
            file=sys.stderr,
        )
        return 2
    if workers > 1:
        return _serve_workers(args, settings, sock, workers)

    async def tune(_: web.Application) -> None:
        tune_for_serving()  # once the broker has started and loaded what it keeps

    app = create_app(settings)
    app.on_startup.append(tune)
    web.run_app(
        app,
        sock=sock,
        print=lambda _: print(
            f"broker listening on {s.listen_host}:{s.listen_port}; public URL {s.public_url}",
            flush=True,
        ),
        access_log=None,
    )
    return 0


def _serve_workers(
    args: argparse.Namespace, settings: Settings, sock: socket.socket, workers: int
) -> int:
    """``broker serve --workers N`` (N > 1): the first start here, once, then the supervisor."""
    import threading

    from broker.service.container import startup_problems
    from broker.supervisor import Supervisor
    from broker.web.app import announce_bootstrap
    from broker.web.serve import first_start, serve_worker

    try:
        password = asyncio.run(first_start(settings))
    except BaseException:
        sock.close()
        raise
    if password:
        announce_bootstrap(password, settings)
    for t in threading.enumerate():  # the first start's threads end before the fork
        if t is not threading.current_thread() and not t.daemon:
            t.join(timeout=5)
    s = settings.server

    def reload() -> Settings:
        new = _serve_settings(args)
        problems = startup_problems(new)  # what ``broker check-config`` checks
        if problems:
            raise ConfigError(problems)
        n = new.server
        if (n.listen_host, n.listen_port) != (s.listen_host, s.listen_port):
            log.warning(
                "[server] listen changed: the workers keep listening on %s:%s until a restart",
                s.listen_host,
                s.listen_port,
            )
            n = dataclasses.replace(n, listen_host=s.listen_host, listen_port=s.listen_port)
            new = dataclasses.replace(new, server=n)
        return new

    def on_ready() -> None:
        print(
            f"broker listening on {s.listen_host}:{s.listen_port}; public URL {s.public_url}; "
            f"{workers} workers",
            flush=True,
        )

    return Supervisor(
        sock=sock,
        workers=workers,
        settings=settings,
        reload=reload,
        run_worker=serve_worker,
        on_ready=on_ready,
    ).run()


def cmd_check_config(args: argparse.Namespace) -> int:
    from broker.service.container import startup_problems

    settings = _settings(args)
    problems = startup_problems(settings)
    if problems:
        raise ConfigError(problems)
    from broker.service.roles import policy_warnings, trust_policy_warnings

    warnings = policy_warnings(settings) + trust_policy_warnings(settings)
    data: dict[str, Any] = {
        "ok": True,
        "providers": sorted(settings.providers),
        "roles": sorted(settings.roles),
        "policies": sorted(settings.policies),
    }
    if warnings:
        data["warnings"] = warnings
    out(
        args,
        data,
        "\n".join(
            [
                f"{args.config}: OK ({len(settings.providers)} providers, "
                f"{len(settings.roles)} roles, {len(settings.policies)} policies)",
                *(f"  warning: {w}" for w in warnings),
            ]
        ),
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from broker.storage import migrate

    settings = _settings(args)
    db = settings.sqlite_path
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(migrate(settings.store.url))
    out(args, {"ok": True}, "the store's schema is up to date")
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    async def run(broker: Any) -> Any:
        return await broker.rotate_keys(reason="cli")

    key = asyncio.run(with_broker(_settings(args), run))
    active_from = datetime.fromtimestamp(key.created_at, UTC).isoformat(timespec="seconds")
    out(
        args,
        {"kid": key.kid, "active_from": active_from},
        f"new signing key {key.kid}, published now (in the JWKS and, within seconds, on every "
        f"instance); it signs from {active_from}. The previous key signs until then and stays "
        "in the JWKS until the tokens it signed expire",
    )
    return 0


def cmd_audit_list(args: argparse.Namespace) -> int:
    from broker.cli_audit import verify, warn_if_broken

    async def run(broker: Any) -> Any:
        report = await verify(broker)  # flushes what this process batched first
        return report, await broker.store.list_audit(limit=args.limit, action=args.action)

    report, events = asyncio.run(with_broker(_settings(args), run))
    warn_if_broken(report)
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
    out(args, rows, text or "no audit events")
    return 0


def _context_args(pairs: Sequence[str]) -> dict[str, str | list[str]]:
    """``key=value`` pairs; a key given more than once becomes a list of its values."""
    context: dict[str, str | list[str]] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise InvalidRequest(
                "bad_context", public_message=f"--context wants key=value, not {pair!r}"
            )
        key = key.strip()
        old = context.get(key)
        if old is None:
            context[key] = value
        else:
            context[key] = [*([old] if isinstance(old, str) else old), value]
    return context


def cmd_simulate(args: argparse.Namespace) -> int:
    from broker.service.simulate import Simulation, Simulator, parse_documents

    policies = parse_documents(
        [read_text_file(f) for f in args.policy], "policy", names=list(args.policy)
    )
    sessions = parse_documents(
        [read_text_file(f) for f in args.session_policy],
        "session-policy",
        names=list(args.session_policy),
    )
    boundary = (
        parse_documents([read_text_file(args.boundary)], "boundary", names=[args.boundary])[0]
        if args.boundary
        else None
    )
    context = _context_args(args.context)
    token = os.environ.get("BROKER_TOKEN", "") if args.token == "-" else args.token

    async def run(broker: Any) -> Simulation:
        credential = await broker.credentials.verify_fresh(token) if token else None
        return await Simulator(broker.authorizer, broker.iam).simulate(
            action=args.action,
            resource=args.resource,
            principal=args.principal,
            credential=credential,
            context=context,
            policies=policies,
            boundary=boundary,
            session_policies=sessions,
        )

    if args.principal is None and not token:
        from broker.service.simulate import simulate_documents

        result = simulate_documents(
            action=args.action,
            resource=args.resource,
            context=context,
            policies=policies,
            boundary=boundary,
            session_policies=sessions,
        )
    else:
        result = asyncio.run(with_broker(_settings(args), run))
    d = result.decision
    lines = [d.decision] + [
        f"  {m.effect:<5} {m.policy} {m.sid if m.sid else f'statement {m.index}'}"
        for m in d.matched_statements
    ]
    out(args, d.to_dict(), "\n".join(lines))
    return 0


def cmd_policies_validate(args: argparse.Namespace) -> int:
    from broker.policy import validate_policy
    from broker.service.simulate import guess_kind

    text = read_text_file(args.file)
    kind = guess_kind(text) if args.kind == "auto" else args.kind
    report = validate_policy(text, kind="resource" if kind == "trust" else "identity")
    data = {"file": args.file, "kind": kind, **report.to_dict()}
    lines = [f"{args.file}: {f}" for f in report.findings]
    n_err, n_warn = len(report.errors), len(report.warnings)
    lines.append(f"{args.file}: {n_err} error(s), {n_warn} warning(s) ({kind} policy)")
    out(args, data, "\n".join(lines))
    return 0 if report.ok else 1


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("broker")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="broker", description="A federated identity token broker."
    )
    parser.add_argument("--version", action="version", version=f"broker {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the broker")
    common_args(p, json=False)  # it prints no result
    p.add_argument(
        "--listen",
        type=_listen_arg,
        metavar="HOST:PORT",
        help="address to listen on (default: [server] listen in the config)",
    )
    p.add_argument(
        "--workers",
        type=_workers_arg,
        metavar="N",
        help="serving processes on one socket (default: $BROKER_WORKERS, else the cores this "
        "process may use); 1 serves in this process, without a supervisor",
    )
    p.set_defaults(fn=cmd_serve)

    p = sub.add_parser("check-config", help="validate the config file and its policies")
    common_args(p)
    p.set_defaults(fn=cmd_check_config)

    p = sub.add_parser("migrate", help="bring the store's schema up to date")
    common_args(p)
    p.set_defaults(fn=cmd_migrate)

    keys = sub.add_parser("keys", help="signing keys").add_subparsers(
        dest="keys_command", required=True, metavar="VERB"
    )
    p = keys.add_parser(
        "rotate",
        help="publish a new signing key now; it signs from the time printed (5.5 min later)",
    )
    common_args(p)
    p.set_defaults(fn=cmd_keys_rotate)

    audit = sub.add_parser("audit", help="the audit log").add_subparsers(
        dest="audit_command", required=True, metavar="VERB"
    )
    p = audit.add_parser("list", help="recent audit events, newest first")
    common_args(p)
    p.add_argument("--limit", type=int, default=50, help="at most this many events (default 50)")
    p.add_argument("--action", help="only this action, e.g. login")
    p.set_defaults(fn=cmd_audit_list)
    p = audit.add_parser(
        "verify",
        help="check the audit trail's hash chain and signed checkpoints",
        description="Exit 0 if every audit row and checkpoint holds; otherwise name the first "
        "broken row (changed, deleted, inserted, reordered) and exit 1.",
    )
    common_args(p)
    p.set_defaults(fn=cmd_audit_verify)

    add_report_unused(add_report_commands(sub))
    add_policy_commands(sub)

    p = sub.add_parser(
        "simulate",
        help="may this principal do this action on this resource? (the policy simulator)",
        description="Evaluate a request against a role's policies (--principal), a broker "
        "credential's (--token), or policy files given directly (--policy), and print "
        "allowed / explicitDeny / implicitDeny with the statements that decided it.",
    )
    common_args(p)
    p.add_argument(
        "--principal",
        help="a role (name, ARN or assumed-role ARN), a user or a group (ARN: "
        "arn:broker:iam::<account>:user/<name>, ...:group/<name>)",
    )
    p.add_argument(
        "--token",
        help="a broker token to simulate (its role and session policies); '-' reads $BROKER_TOKEN",
    )
    p.add_argument("--action", required=True, help="e.g. http:GET, s3:GetObject, iam:CreateUser")
    p.add_argument("--resource", required=True, help="e.g. https://app.example.com/x or an ARN")
    p.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a condition key (repeatable; repeat a key for a list), e.g. aws:SourceIp=10.0.0.1",
    )
    p.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="FILE",
        help="an identity policy to add (repeatable)",
    )
    p.add_argument("--boundary", metavar="FILE", help="a permissions boundary to use")
    p.add_argument(
        "--session-policy",
        action="append",
        default=[],
        metavar="FILE",
        help="a session policy (repeatable)",
    )
    p.set_defaults(fn=cmd_simulate)

    admin = sub.add_parser(
        "admin",
        help="administer the broker as the account root",
        description="Administer the broker directly through its store, on the server host, "
        "as the account's root: every permission check is skipped (as for AWS's root user) "
        "and every change is audited with principal 'root/cli:<OS user>'. Everyone else "
        "administers through the IAM API (aws iam ... --endpoint-url <public_url>).",
    ).add_subparsers(dest="admin_noun", required=True, metavar="NOUN")
    policies = add_admin_commands(admin)
    add_access_key_commands(admin)
    p = policies.add_parser(
        "validate",
        help="list every error and warning of a policy file, with paths and fixes",
        description="Exits 1 when the policy has errors (warnings alone exit 0).",
    )
    p.add_argument("file", metavar="FILE", help="a JSON policy document")
    p.add_argument(
        "--kind",
        choices=["auto", "identity", "trust"],
        default="auto",
        help="trust: a role trust policy (needs Principal); auto: trust if any statement has "
        "Principal or NotPrincipal (default)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(fn=cmd_policies_validate)
    add_client_commands(sub)
    return parser


def _group_args(parser: argparse.ArgumentParser) -> None:
    """Let ``--config`` and ``--json`` also come before the verb (``broker keys --config X
    rotate``): every parser that has verbs takes them too, under other names that ``main``
    merges (a verb's own default would otherwise overwrite what its group was given)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            if parser.prog != "broker":
                parser.add_argument(
                    "--config",
                    dest="group_config",
                    metavar="PATH",
                    default=argparse.SUPPRESS,
                    help="as the verb's",
                )
                parser.add_argument(
                    "--json",
                    dest="group_json",
                    action="store_true",
                    default=argparse.SUPPRESS,
                    help="as the verb's",
                )
            for child in set(action.choices.values()):
                _group_args(child)


def _merge_group_args(args: argparse.Namespace) -> None:
    if getattr(args, "group_json", False) and hasattr(args, "json"):
        args.json = True
    group_config = getattr(args, "group_config", None)
    default = os.environ.get("BROKER_CONFIG", str(DEFAULT_CONFIG_PATH))
    if group_config is not None and getattr(args, "config", None) == default:
        args.config = group_config  # the verb was not given its own


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    _group_args(parser)
    args = parser.parse_args(argv)
    _merge_group_args(args)
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
    except ClientError as e:
        print(f"broker: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (``broker audit list | head``): no traceback, and none again at
        # exit when Python flushes stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
