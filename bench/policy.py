"""Policy-engine benchmark (not a test): this engine against vakt and cedarpy, in one run.

Workload (seeded, reproducible): 50 policies of 5 statements (250 statements) attached to one
role, with wildcard actions and resources and conditions (StringEquals, StringLike, IpAddress,
NumericLessThan, Bool); 10,000 requests. Every engine decides the same requests; decisions must
agree (the workload stays inside the semantics the three share: ``*`` wildcards, deny wins,
default deny, every condition key present).

* broker: ``Authorizer.decide`` — the broker's own path: roles read from a real SQLite store,
  compiled once; a request consults only the role's own policies. Also ``evaluate()`` directly,
  with a tuple kept by the caller, with new lists per call (as ``broker.policy``'s docstring
  shows it), and ``PolicySet(...).evaluate()`` (compiled once).
* vakt 1.6: rule-based policies in ``MemoryStorage``, ``Guard`` + ``RulesChecker``.
* cedarpy: the same statements as Cedar ``permit``/``forbid`` policies, parsed once into a
  ``PolicySet``; measured per request (``is_authorized``) and batched (``is_authorized_batch``).

Then the same requests with 1,000 and 10,000 extra policies attached to OTHER roles (5 per
role); the broker should stay flat. vakt (no principal index) is measured on a sample there.

Rates are the best of ``--repeat`` timed passes for the broker and vakt alike (cedarpy: one
pass). The broker compiles a role's statements per action on first use and keeps them (no
decision is ever cached), so its first, cold pass is reported on its own row.

    .venv/bin/pip install -e '.[bench]'     # vakt, cedarpy
    .venv/bin/python bench/policy.py [--requests 10000] [--repeat 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker.clock import SystemClock
from broker.config import load_settings
from broker.policy import PolicySet, evaluate, parse_policy
from broker.service.authorize import Authorizer, Principal
from broker.storage import migrate
from broker.storage.base import RoleRecord
from broker.storage.sql import open_store

SERVICES = ["s3", "ec2", "dynamodb", "sqs", "http", "iam", "kms", "logs"]
VERBS = ["Get", "Put", "Delete", "List", "Describe", "Create"]
NOUNS = ["Object", "Bucket", "Item", "Queue", "Key", "Stream", "Instance", "Table"]
ENVS = ["prod", "staging", "dev"]


@dataclass(frozen=True)
class Stmt:
    effect: str  # Allow | Deny
    action: str  # glob with * only
    resource: str  # glob with * only
    condition: tuple[str, str, str] | None  # (kind, key, value)


@dataclass(frozen=True)
class Request:
    action: str
    resource: str
    context: dict[str, Any]


def make_statement(rng: random.Random) -> Stmt:
    svc = rng.choice(SERVICES)
    shape = rng.random()
    if shape < 0.4:
        action = f"{svc}:{rng.choice(VERBS)}{rng.choice(NOUNS)}"
    elif shape < 0.8:
        action = f"{svc}:{rng.choice(VERBS)}*"
    else:
        action = f"{svc}:*"
    bucket = rng.randrange(20)
    shape = rng.random()
    if shape < 0.3:
        resource = f"arn:aws:{svc}:::res-{bucket}/*"
    elif shape < 0.6:
        resource = f"arn:aws:{svc}:::res-{bucket}/*/logs/*"
    elif shape < 0.8:
        resource = f"arn:aws:{svc}:::res-{bucket}/item-{rng.randrange(10)}"
    else:
        resource = f"arn:aws:{svc}:::res-*"
    condition = None
    kind = rng.random()
    if kind < 0.15:
        condition = ("StringEquals", "k:env", rng.choice(ENVS))
    elif kind < 0.3:
        condition = ("StringLike", "k:team", f"team-{rng.choice('abc')}*")
    elif kind < 0.4:
        condition = ("IpAddress", "aws:SourceIp", rng.choice(["10.0.0.0/8", "192.168.0.0/16"]))
    elif kind < 0.5:
        condition = ("NumericLessThan", "k:level", str(rng.randrange(1, 10)))
    elif kind < 0.6:
        condition = ("Bool", "aws:MultiFactorAuthPresent", "true")
    effect = "Deny" if rng.random() < 0.15 else "Allow"
    return Stmt(effect, action, resource, condition)


def make_policies(rng: random.Random, count: int, per: int = 5) -> list[list[Stmt]]:
    return [[make_statement(rng) for _ in range(per)] for _ in range(count)]


def make_requests(rng: random.Random, count: int) -> list[Request]:
    out = []
    for _ in range(count):
        svc = rng.choice(SERVICES)
        action = f"{svc}:{rng.choice(VERBS)}{rng.choice(NOUNS)}"
        bucket = rng.randrange(22)
        tail = rng.choice(
            [f"item-{rng.randrange(12)}", f"a/logs/{rng.randrange(99)}", "x/y", "logs/z"]
        )
        resource = f"arn:aws:{svc}:::res-{bucket}/{tail}"
        context = {
            "k:env": rng.choice(ENVS),
            "k:team": rng.choice(["team-a1", "team-b", "team-c7", "ops"]),
            "aws:SourceIp": rng.choice(["10.1.2.3", "192.168.9.9", "203.0.113.5"]),
            "k:level": str(rng.randrange(0, 12)),
            "aws:MultiFactorAuthPresent": rng.choice(["true", "false"]),
        }
        out.append(Request(action, resource, context))
    return out


# --- broker ------------------------------------------------------------------------------------


def iam_document(statements: Sequence[Stmt]) -> dict[str, Any]:
    out = []
    for s in statements:
        st: dict[str, Any] = {"Effect": s.effect, "Action": s.action, "Resource": s.resource}
        if s.condition:
            kind, key, value = s.condition
            st["Condition"] = {kind: {key: value}}
        out.append(st)
    return {"Version": "2012-10-17", "Statement": out}


async def authorizer_with(
    directory: Path, mine: list[list[Stmt]], others: list[list[Stmt]]
) -> Authorizer:
    config = directory / "broker.toml"
    config.write_text(
        '[store]\nurl = "sqlite:///bench.db"\n[keys]\nkek = "'
        'QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="\n[providers.local]\ntype = "local"\n'
    )
    settings = load_settings(config)
    await migrate(settings.store.url)
    store = open_store(settings.store.url)
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Federated": "local"}, "Action": "sts:*"}],
    }
    now = time.time()
    roles = [("bench", mine)] + [
        (f"other-{i // 5}", others[i : i + 5]) for i in range(0, len(others), 5)
    ]
    for name, policies in roles:
        docs = [iam_document(p) for p in policies]
        await store.put_role(RoleRecord(name, "", trust, docs, None, 3600, "api", now, now))
    authorizer = Authorizer(settings, store, SystemClock())
    await authorizer.refresh()
    await store.close()
    return authorizer


def broker_decider(authorizer: Authorizer) -> Callable[[Request], bool]:
    principal = Principal(role_arn=authorizer.role_arn("bench"))

    def decide(r: Request) -> bool:
        return authorizer.decide(
            principal, action=r.action, resource=r.resource, context=r.context
        ).allowed

    return decide


def evaluate_decider(policies: list[list[Stmt]]) -> Callable[[Request], bool]:
    parsed = tuple(parse_policy(iam_document(p), name=f"p{i}") for i, p in enumerate(policies))

    def decide(r: Request) -> bool:
        return evaluate(r.action, r.resource, r.context, identity=parsed).allowed

    return decide


def policy_set_decider(policies: list[list[Stmt]]) -> Callable[[Request], bool]:
    rules = PolicySet(
        identity=[parse_policy(iam_document(p), name=f"p{i}") for i, p in enumerate(policies)]
    )

    def decide(r: Request) -> bool:
        return rules.evaluate(r.action, r.resource, r.context).allowed

    return decide


def evaluate_lists_decider(policies: list[list[Stmt]]) -> Callable[[Request], bool]:
    """As ``broker.policy``'s docstring shows it: new lists on every call."""
    parsed = [parse_policy(iam_document(p), name=f"p{i}") for i, p in enumerate(policies)]

    def decide(r: Request) -> bool:
        return evaluate(r.action, r.resource, r.context, identity=[*parsed], session=[]).allowed

    return decide


# --- vakt --------------------------------------------------------------------------------------


def vakt_guard(policies: list[list[Stmt]], others: list[list[Stmt]] = ()) -> Any:  # type: ignore[assignment]
    import vakt
    from vakt.rules import CIDR, Eq, Less, RegexMatch

    def regex(glob: str) -> Any:
        return RegexMatch("".join(".*" if c == "*" else re.escape(c) for c in glob) + r"\Z")

    rules = {
        "StringEquals": lambda v: Eq(v),
        "StringLike": lambda v: regex(v),
        "IpAddress": lambda v: CIDR(v),
        "NumericLessThan": lambda v: Less(int(v)),
        "Bool": lambda v: Eq(v),
    }
    storage = vakt.MemoryStorage()
    uid = 0
    for subject, group in [("bench", policies), ("other", others)]:
        for p_index, p in enumerate(group):
            who = subject if subject == "bench" else f"other-{p_index // 5}"
            for s in p:
                context = {}
                if s.condition:
                    kind, key, value = s.condition
                    context[key] = rules[kind](value)
                storage.add(
                    vakt.Policy(
                        uid,
                        subjects=[Eq(who)],
                        effect=vakt.ALLOW_ACCESS if s.effect == "Allow" else vakt.DENY_ACCESS,
                        actions=[regex(s.action)],
                        resources=[regex(s.resource)],
                        context=context,
                    )
                )
                uid += 1
    return vakt.Guard(storage, vakt.RulesChecker())


def vakt_decider(guard: Any) -> Callable[[Request], bool]:
    import vakt

    def decide(r: Request) -> bool:
        context = dict(r.context)
        context["k:level"] = int(context["k:level"])
        inquiry = vakt.Inquiry(
            subject="bench", action=r.action, resource=r.resource, context=context
        )
        return bool(guard.is_allowed(inquiry))

    return decide


# --- cedar -------------------------------------------------------------------------------------

CEDAR_KEYS = {
    "k:env": "env",
    "k:team": "team",
    "aws:SourceIp": "ip",
    "k:level": "level",
    "aws:MultiFactorAuthPresent": "mfa",
}


def cedar_text(policies: list[list[Stmt]], others: list[list[Stmt]] = ()) -> str:  # type: ignore[assignment]
    def cond(s: Stmt) -> str:
        parts = [f'context.action like "{s.action}"', f'context.resource like "{s.resource}"']
        if s.condition:
            kind, key, value = s.condition
            attr = f"context.{CEDAR_KEYS[key]}"
            parts.append(
                {
                    "StringEquals": f'{attr} == "{value}"',
                    "StringLike": f'{attr} like "{value}"',
                    "IpAddress": f'ip({attr}).isInRange(ip("{value}"))',
                    "NumericLessThan": f"{attr} < {value}",
                    "Bool": f"{attr} == {value}",
                }[kind]
            )
        return " && ".join(parts)

    out = []
    for subject, group in [("bench", policies), ("other", others)]:
        for p_index, p in enumerate(group):
            who = subject if subject == "bench" else f"other-{p_index // 5}"
            for s in p:
                verb = "permit" if s.effect == "Allow" else "forbid"
                out.append(
                    f'{verb}(principal == User::"{who}", action, resource) when {{ {cond(s)} }};'
                )
    return "\n".join(out)


def cedar_request(r: Request) -> dict[str, Any]:
    c = r.context
    return {
        "principal": 'User::"bench"',
        "action": 'Action::"call"',
        "resource": 'Resource::"r"',
        "context": {
            "action": r.action,
            "resource": r.resource,
            "env": c["k:env"],
            "team": c["k:team"],
            "ip": c["aws:SourceIp"],
            "level": int(c["k:level"]),
            "mfa": c["aws:MultiFactorAuthPresent"] == "true",
        },
    }


# --- timing ------------------------------------------------------------------------------------


def rate(
    decide: Callable[[Request], bool], requests: Sequence[Request], repeat: int = 1
) -> tuple[float, list[bool]]:
    """Decisions per second: the best of ``repeat`` timed passes over the requests (the first
    pass included: pass ``repeat=1`` for a cold number). Nothing is cached across passes but
    what each engine compiles once (the broker's per-action statement lists)."""
    best = float("inf")
    answers: list[bool] = []
    for _ in range(repeat):
        start = time.perf_counter()
        answers = [decide(r) for r in requests]
        best = min(best, time.perf_counter() - start)
    return len(requests) / best, answers


def row(name: str, per_s: float, baseline: float | None, note: str = "") -> None:
    ratio = f"{per_s / baseline:8.1f}x" if baseline else "        "
    print(f"  {name:<44} {per_s:>12,.0f} decisions/s  {ratio}  {note}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="skip the 10,000-other-policies run")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes (best kept) per engine")
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    mine = make_policies(rng, 50)
    requests = make_requests(rng, args.requests)
    n_statements = sum(len(p) for p in mine)
    print(
        f"workload: {len(mine)} policies / {n_statements} statements / {len(requests):,} "
        f"requests (seed {args.seed}); Python {sys.version.split()[0]}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        authorizer = asyncio.run(authorizer_with(Path(tmp), mine, []))
    # The first pass compiles each action's statement lists (once per role and action, kept):
    # shown on its own, then the steady state (best of --repeat passes; vakt gets the same).
    decider = broker_decider(authorizer)
    cold_rate, _ = rate(decider, requests)
    broker_rate, broker_answers = rate(decider, requests, args.repeat)
    eval_rate, eval_answers = rate(evaluate_decider(mine), requests, args.repeat)
    list_rate, list_answers = rate(evaluate_lists_decider(mine), requests, args.repeat)
    assert list_answers == eval_answers, "evaluate() with lists decided otherwise"
    set_rate, set_answers = rate(policy_set_decider(mine), requests, args.repeat)
    assert set_answers == eval_answers, "PolicySet decided otherwise"
    allowed = sum(broker_answers)
    print(f"  decisions: {allowed:,} allowed, {len(requests) - allowed:,} denied")

    results: list[tuple[str, float, str]] = []
    mismatches: dict[str, int] = {
        "evaluate()": sum(a != b for a, b in zip(broker_answers, eval_answers, strict=True))
    }

    vakt_rate: float | None = None
    try:
        guard = vakt_guard(mine)
    except ImportError:
        print("  vakt: not installed (pip install vakt) — skipped")
    else:
        vakt_rate, vakt_answers = rate(vakt_decider(guard), requests, args.repeat)
        mismatches["vakt"] = sum(a != b for a, b in zip(broker_answers, vakt_answers, strict=True))
        results.append(("vakt 1.6 Guard.is_allowed", vakt_rate, ""))

    try:
        import cedarpy
    except ImportError:
        print("  cedarpy: not installed (pip install cedarpy) — skipped")
    else:
        policy_set = cedarpy.PolicySet.from_str(cedar_text(mine))
        entities = cedarpy.Entities.from_list([]) if hasattr(cedarpy.Entities, "from_list") else []
        cedar_requests = [cedar_request(r) for r in requests]

        def cedar_one(r: Request) -> bool:
            result = cedarpy.is_authorized(cedar_request(r), policy_set, entities)
            return bool(result.allowed)

        one_rate, cedar_answers = rate(cedar_one, requests)
        start = time.perf_counter()
        batch = cedarpy.is_authorized_batch(cedar_requests, policy_set, entities)
        batch_rate = len(requests) / (time.perf_counter() - start)
        batch_answers = [bool(r.allowed) for r in batch]
        mismatches["cedarpy"] = sum(
            a != b for a, b in zip(broker_answers, cedar_answers, strict=True)
        )
        mismatches["cedarpy batch"] = sum(
            a != b for a, b in zip(broker_answers, batch_answers, strict=True)
        )
        results.append(("cedarpy is_authorized (parsed PolicySet)", one_rate, ""))
        results.append(("cedarpy is_authorized_batch", batch_rate, "(Rust loop, one call)"))

    base = vakt_rate
    print("\nsame 10,000 requests (ratio: against vakt, measured in this run)" if base else "")
    row("broker Authorizer.decide (role's policies)", broker_rate, base)
    row("broker Authorizer.decide, first pass", cold_rate, base, "(compiles each action's plan)")
    row("broker evaluate() (policies passed in)", eval_rate, base)
    row("broker evaluate(identity=[...], session=[])", list_rate, base, "(new lists per call)")
    row("broker PolicySet(...).evaluate()", set_rate, base, "(compiled once)")
    for name, per_s, note in results:
        row(name, per_s, base, note)
    print(
        "\ndecisions that differ from the broker's: "
        + ", ".join(f"{k} {v}" for k, v in mismatches.items())
    )

    print("\nwith policies attached to OTHER roles (5 per role); ratio: against 0 others")
    sizes = [1_000] if args.quick else [1_000, 10_000]
    for extra in sizes:
        others = make_policies(random.Random(args.seed + extra), extra)
        with tempfile.TemporaryDirectory() as tmp:
            loaded = time.perf_counter()
            big = asyncio.run(authorizer_with(Path(tmp), mine, others))
            loaded = time.perf_counter() - loaded
        per_s, answers = rate(broker_decider(big), requests, args.repeat)
        same = sum(a == b for a, b in zip(answers, broker_answers, strict=True)) == len(requests)
        row(f"broker, +{extra:,} other policies", per_s, broker_rate,
            f"(store + compile {loaded:.1f}s; same decisions: {same})")  # fmt: skip
        if vakt_rate is not None:
            sample = requests[: max(50, 200_000 // (extra * 5))]
            v_per_s, _ = rate(vakt_decider(vakt_guard(mine, others)), sample)
            row(f"vakt,   +{extra:,} other policies", v_per_s, vakt_rate,
                f"({len(sample)} requests sampled)")  # fmt: skip
    return 0 if all(v == 0 for v in mismatches.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
