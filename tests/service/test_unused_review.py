"""The unused-access review and policy generation on a fixture with a controlled clock: exactly
the unused entities are listed (through the service, its CLI writer and ``broker report
unused``); the generated policy allows exactly what was observed (checked with the policy
engine) and the validator accepts it; the activity aggregate stays bounded under a key flood."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from broker.cli import main
from broker.cli_review import write_unused
from broker.clock import FrozenClock
from broker.config import load_settings
from broker.errors import NotFound
from broker.policy import validate_policy
from broker.service.activity import ActivityLog
from broker.service.audit import RequestInfo
from broker.service.container import Broker
from broker.service.policy_generation import MAX_RESOURCES_PER_SCOPE, PolicyGenerator
from broker.service.unused import Finding, UnusedAccess
from broker.storage import schema as t
from broker.storage.base import ActivityRow, Group, ManagedPolicyRecord, User
from tests.conftest import write_config
from tests.support.oidc_server import free_port

DAY = 86400.0
ACCOUNT = "000000000000"
TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Federated": "local"},
            "Action": "sts:AssumeRoleWithWebIdentity",
        }
    ],
}


def arn(kind: str, name: str) -> str:
    return f"arn:broker:iam::{ACCOUNT}:{kind}/{name}"


@dataclass
class Fixture:
    broker: Broker
    clock: FrozenClock
    config: Path
    t0: float


@pytest.fixture
async def fx(tmp_path: Path) -> AsyncIterator[Fixture]:
    t0 = float(int(time.time() - 100 * DAY))  # "now" (the CLI's real clock) is t0 + 100 days
    clock = FrozenClock(t0)
    config = write_config(
        tmp_path,
        port=free_port(),
        oidc=None,
        roles={"dev": TRUST, "old": TRUST, "ci": TRUST},
        store_url=f"sqlite:///{tmp_path / 'broker.db'}",
    )
    async with aiohttp.ClientSession() as http:
        b = await Broker.open(load_settings(config), http=http, clock=clock, bootstrap=False)
        try:
            yield Fixture(b, clock, config, t0)
        finally:
            await b.close()


async def seed(fx: Fixture) -> None:
    """Used: alice (signed in), carol (activity), dave (an access key), roles dev and ci,
    policy UsedPol. Unused: bob, role old, bob's keys, Orphan and IdlePol; MFA: only alice."""
    b, t0, store = fx.broker, fx.t0, fx.broker.store
    for name in ("alice", "bob", "carol", "dave"):
        await store.create_user(
            User(id=f"id-{name}", provider="local", subject=name, name=name, created_at=t0)
        )
    await store.record_login("id-alice", t0 + 95 * DAY)
    engine = sa.create_engine(f"sqlite:///{b.settings.sqlite_path}")
    with engine.begin() as conn:
        for key, user, used in (
            ("AKIA1", "dave", t0 + 98 * DAY),
            ("AKIA2", "bob", None),
            ("AKIA3", "bob", t0 + DAY),
        ):
            conn.execute(
                sa.insert(t.access_keys).values(
                    access_key_id=key,
                    user_id=f"id-{user}",
                    secret_sealed=b"x",
                    seal_kid="k",
                    status="Active",
                    created_at=t0,
                    last_used_at=used,
                )
            )
        for serial, user, enabled in (("mfa-a", "alice", t0), ("mfa-c", "carol", None)):
            conn.execute(
                sa.insert(t.mfa_devices).values(
                    serial_number=serial,
                    name=serial,
                    path="/",
                    user_id=f"id-{user}",
                    seed_sealed=b"x",
                    seal_kid="k",
                    created_at=t0,
                    enabled_at=enabled,
                )
            )
    engine.dispose()
    for name, action in (
        ("Orphan", "s3:*"),
        ("UsedPol", "iam:List*"),
        ("IdlePol", "iam:CreateUser"),
    ):
        doc = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}],
        }
        await store.put_managed_policy(ManagedPolicyRecord(name=name, document=doc, created_at=t0))
    # (config roles' attachments are reconciled from the file: attach to a group and a user)
    await store.create_group(Group(name="readers", created_at=t0))
    await store.add_group_member("readers", "id-carol")
    await store.attach_policy("group", "readers", "UsedPol")  # carol listed users
    await store.attach_policy("user", "id-carol", "IdlePol")  # carol never created one
    # Activity through the recorder, at controlled times, then flushed (upsert).
    activity = b.activity
    fx.clock.t = t0 + 5 * DAY  # old: outside a 90-day window ending at t0 + 100 days
    activity.note(arn("role", "old"), "http:GET", "https://app.example.com/")
    fx.clock.t = t0 + 99 * DAY
    activity.note(arn("role", "dev"), "http:GET", "https://app.example.com/x")
    activity.note(arn("user", "carol"), "iam:ListUsers", "*")
    activity.note(
        f"arn:broker:iam::{ACCOUNT}:oidc-provider/local",
        "sts:AssumeRoleWithWebIdentity",
        arn("role", "ci"),
    )
    assert await b.flush_activity() == 4
    fx.clock.t = t0 + 100 * DAY


EXPECTED = [
    ("user", "bob"),
    ("role", "old"),
    ("access_key", "AKIA2"),
    ("access_key", "AKIA3"),
    ("mfa", "bob"),
    ("mfa", "carol"),
    ("mfa", "dave"),
    ("policy", "IdlePol"),
    ("policy", "Orphan"),
]


async def test_unused_report_lists_exactly_the_unused(fx: Fixture) -> None:
    await seed(fx)
    review = UnusedAccess(fx.broker.settings, fx.broker.store, fx.clock, page=2)  # several pages
    found = [f async for f in review.findings(90)]
    assert [(f.kind, f.name) for f in found] == EXPECTED
    old = next(f for f in found if f.kind == "role")
    assert old.last_used == fx.t0 + 5 * DAY  # last use ever, outside the window
    # a window reaching back past day 5 makes role old used; bob stays unused
    wide = [(f.kind, f.name) for f in await _all(review, 96)]
    assert ("role", "old") not in wide
    assert ("user", "bob") in wide

    out = io.StringIO()
    assert await write_unused(fx.broker, 90, True, out) == len(EXPECTED)
    doc = json.loads(out.getvalue())
    assert [(f["kind"], f["name"]) for f in doc["findings"]] == EXPECTED


@pytest.mark.parametrize("path", ["chooser", "single-role"])
async def test_a_role_chosen_in_the_browser_is_not_reported_unused(
    fx: Fixture, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    """Signing in and taking role ``old`` is assuming it (as AssumeRoleWithWebIdentity records
    it), though the session then does nothing through ``/auth`` or ``/v1/authorize``."""
    await seed(fx)
    b, req = fx.broker, RequestInfo(source_ip="127.0.0.1")
    alice = await b.store.get_user("id-alice")
    if path == "chooser":  # several roles: the person picks one on /roles
        outcome = await b.login.local_outcome(alice, rd="/session", role=None, req=req)
        assert len(outcome.candidates) > 1
        ticket = await b.login.offer_roles(outcome, browser="browser-1")
        done = await b.login.choose_role(ticket, "old", browser="browser-1", req=req)
    else:  # ``/login?role=old``: straight to the session
        outcome = await b.login.local_outcome(alice, rd="/session", role="old", req=req)
        done = await b.login.complete(
            outcome.identity, "old", [c.role.name for c in outcome.candidates], rd="/", req=req
        )
    assert done.session.role_arn == arn("role", "old")
    assert await b.flush_activity() == 1
    assert await b.store.assumed_roles([arn("role", "old")]) == {arn("role", "old"): fx.clock.t}
    await b.close()

    code = await asyncio.to_thread(
        main, ["report", "unused", "--days", "90", "--json", "--config", str(fx.config)]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert [(f["kind"], f["name"]) for f in doc["findings"]] == [
        x for x in EXPECTED if x != ("role", "old")
    ]


async def _all(review: UnusedAccess, days: int) -> list[Finding]:
    return [f async for f in review.findings(days)]


async def test_broker_report_unused_cli(fx: Fixture, capsys: pytest.CaptureFixture[str]) -> None:
    await seed(fx)
    await fx.broker.close()
    code = await asyncio.to_thread(
        main, ["report", "unused", "--days", "90", "--json", "--config", str(fx.config)]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["days"] == 90
    assert [(f["kind"], f["name"]) for f in doc["findings"]] == EXPECTED
    code = await asyncio.to_thread(
        main, ["report", "unused", "--days", "90", "--config", str(fx.config)]
    )
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["KIND", "NAME"]
    assert [tuple(line.split()[:2]) for line in table[1:]] == EXPECTED
    with pytest.raises(SystemExit):  # argparse: one clear line, exit status 2
        await asyncio.to_thread(
            main, ["report", "unused", "--days", "0", "--config", str(fx.config)]
        )


async def test_generated_policy_allows_exactly_what_was_observed(fx: Fixture) -> None:
    store, t0, dev = fx.broker.store, fx.t0, arn("role", "dev")
    fx.clock.t = t0 + 100 * DAY
    in_window = t0 + 95 * DAY
    paths = [f"https://app.example.com/api/users/{i}" for i in range(MAX_RESOURCES_PER_SCOPE + 5)]
    observed = [
        ("http:POST", "https://app.example.com/submit"),
        ("http:GET", "https://app.example.com/a*b?$"),  # literal characters, not wildcards
        ("http:GET", "https://grafana.example.com/d/1"),
        ("iam:ListUsers", "*"),
        ("sts:AssumeRole", arn("role", "ci")),
        *(("http:PUT", p) for p in paths),
    ]
    rows = [ActivityRow(dev, a, r, in_window, in_window, 1) for a, r in observed]
    rows.append(ActivityRow(dev, "http:DELETE", "https://app.example.com/old", t0, t0 + DAY, 9))
    rows.append(ActivityRow(dev, "app:Read*", "x", in_window, in_window, 1))  # skipped
    rows.append(
        ActivityRow(
            arn("role", "old"), "http:PATCH", "https://app.example.com/x", in_window, in_window, 1
        )
    )
    await store.add_activity(rows)

    gen = PolicyGenerator(fx.broker.settings, store, fx.clock)
    result = await gen.generate("dev", 30)
    assert result.skipped == ("app:Read*",)
    assert validate_policy(result.document, kind="identity").errors == ()
    again = await gen.generate("dev", 30)
    assert json.dumps(again.document) == json.dumps(result.document)  # deterministic
    resources = {r for s in result.document["Statement"] for r in s["Resource"]}
    assert "https://app.example.com/api/users/*" in resources  # collapsed: many paths, one host
    api = fx.broker.iam_api

    async def decide(action: str, resource: str) -> str:
        """The simulator's answer for the generated policy alone (``SimulateCustomPolicy``)."""
        out = await api.call(
            api.root(),
            "SimulateCustomPolicy",
            {
                "PolicyInputList": [json.dumps(result.document)],
                "ActionNames": [action],
                "ResourceArns": [resource],
            },
        )
        [evaluation] = out["EvaluationResults"]
        assert (evaluation["EvalActionName"], evaluation["EvalResourceName"]) == (
            action,
            resource,
        )
        return str(evaluation["EvalDecision"])

    for action, resource in observed:
        assert await decide(action, resource) == "allowed", (action, resource)
    for action, resource in [
        ("http:DELETE", "https://app.example.com/old"),  # outside the window
        ("http:PATCH", "https://app.example.com/x"),  # another role's
        ("http:POST", "https://app.example.com/other"),
        ("http:GET", "https://app.example.com/submit"),
        ("http:GET", "https://app.example.com/aXb?$"),  # the * was literal
        ("http:PUT", "https://app.example.com/other/1"),
        ("http:PUT", "https://evil.example.com/api/users/1"),
        ("http:GET", "https://grafana.example.com/d/2"),
        ("iam:CreateUser", "*"),
        ("sts:AssumeRole", arn("role", "old")),
        ("app:ReadSecrets", "x"),
    ]:
        assert await decide(action, resource) == "implicitDeny", (action, resource)

    with pytest.raises(NotFound):
        await gen.generate("old", 1)  # nothing in the last day
    with pytest.raises(NotFound):
        await gen.generate("nobody", 30)


async def test_policy_generate_cli_writes_a_valid_file(fx: Fixture, tmp_path: Path) -> None:
    dev = arn("role", "dev")
    now = time.time()
    await fx.broker.store.add_activity(
        [ActivityRow(dev, "http:GET", "https://app.example.com/x", now, now, 3)]
    )
    await fx.broker.close()
    target = tmp_path / "dev-policy.json"
    args = [
        "policy",
        "generate",
        "--role",
        "dev",
        "--days",
        "7",
        "--output",
        str(target),
        "--config",
        str(fx.config),
    ]
    assert await asyncio.to_thread(main, args) == 0
    doc = json.loads(target.read_text())
    assert doc["Statement"] == [
        {
            "Effect": "Allow",
            "Action": ["http:GET"],
            "Resource": ["https://app.example.com/x"],
            "Sid": "Observed1",
        }
    ]
    assert validate_policy(doc).ok


async def test_activity_aggregate_is_bounded_under_a_key_flood() -> None:
    clock = FrozenClock()
    log = ActivityLog(store=None, clock=clock, max_keys=100)  # type: ignore[arg-type]
    for i in range(5000):
        log.note("arn:broker:iam::0:role/dev", "http:GET", f"https://app.example.com/p/{i}")
    for i in range(5000):
        log.note(f"arn:broker:iam::0:role/r{i}", "http:GET", "https://app.example.com/")
    assert len(log) <= 110
    rows = {(r.principal_arn, r.resource): r.count for r in log.pending()}
    # the first 100 keys exactly, then the host as a wildcard, then dropped (and counted)
    assert rows[("arn:broker:iam::0:role/dev", "https://app.example.com/p/0")] == 1
    assert rows[("arn:broker:iam::0:role/dev", "https://app.example.com/*")] == 4900
    assert sum(rows.values()) + log.dropped == 10000
    assert log.dropped > 0


async def test_the_periodic_tick_flushes_the_activity(fx: Fixture) -> None:
    b, dev = fx.broker, arn("role", "dev")
    await b.tick()  # the flush interval starts now
    b.activity.note(dev, "http:GET", "https://app.example.com/x")
    b.activity.note(dev, "http:GET", "https://app.example.com/x")
    await b.tick()  # within the interval: nothing written yet
    assert await b.store.activity_summary([dev]) == []
    fx.clock.advance(5)
    await b.tick()
    rows = await b.store.activity_page(dev, since=0, after=("", ""), limit=5)
    assert [(r.action, r.count, r.first_at, r.last_at) for r in rows] == [
        ("http:GET", 2, fx.t0, fx.t0)
    ]
    assert len(b.activity) == 0
