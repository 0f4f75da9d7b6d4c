"""The key ring on real SQLite and PostgreSQL stores, with several instances on one database.

Each "instance" is a ``KeyRing`` on its own ``SqlStore`` (its own connection pool), as separate
broker processes would be; one test also starts real separate processes. The clock is a
``FrozenClock`` moved by the test: nothing waits in real time.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import TYPE_CHECKING, Any

from broker.clock import FrozenClock
from broker.keyring import PUBLISH_AHEAD, KeyRing
from broker.storage.base import Store

if TYPE_CHECKING:
    from tests.storage.conftest import Database, StoreFactory

T0 = 1_700_000_000.0
KEK = bytes(range(32))
ISSUER = "https://broker.example.com"
TYP = "broker-session+jwt"
LIFETIME = 900.0
ROTATE = 7 * 86400.0
INSTANCES = 4


def ring(store: Store, clock: FrozenClock) -> KeyRing:
    return KeyRing(
        store,
        algorithm="EdDSA",
        kek=KEK,
        rotate_every=ROTATE,
        max_token_lifetime=LIFETIME,
        issuer=ISSUER,
        clock=clock,
    )


def claims(clock: FrozenClock, n: int) -> dict[str, Any]:
    now = int(clock.now())
    return {"iss": ISSUER, "sub": "u", "aud": ISSUER, "iat": now, "exp": now + 600, "jti": str(n)}


async def instances(store_factory: StoreFactory, clock: FrozenClock, n: int) -> list[KeyRing]:
    return [ring(await store_factory(), clock) for _ in range(n)]


def every_token_verifies_everywhere(rings: list[KeyRing], clock: FrozenClock) -> None:
    """Each instance signs; every instance verifies it synchronously (no store read)."""
    for i, signer in enumerate(rings):
        token = signer.sign(claims(clock, i), typ=TYP)
        for verifier in rings:
            verifier.verify(token, typ=TYP, audience=ISSUER)


async def test_instances_starting_together_on_an_empty_store_make_one_key(
    store_factory: StoreFactory,
) -> None:
    clock = FrozenClock(T0)
    rings = await instances(store_factory, clock, INSTANCES)
    await asyncio.gather(*(r.load() for r in rings))
    keys = await rings[0]._store.list_signing_keys()
    assert len(keys) == 1
    assert {r.current_kid for r in rings} == {keys[0].kid}
    every_token_verifies_everywhere(rings, clock)


async def test_concurrent_rotations_leave_one_current_key_and_refuse_no_token(
    store_factory: StoreFactory,
) -> None:
    clock = FrozenClock(T0)
    rings = await instances(store_factory, clock, INSTANCES)
    for r in rings:
        await r.load()
    old = rings[0].current_kid
    clock.advance(ROTATE)
    rotated = await asyncio.gather(*(r.maybe_rotate() for r in rings))
    [new] = [k for k in rotated if k is not None]  # one compare-and-swap won
    keys = await rings[0]._store.list_signing_keys()
    assert len(keys) == 2
    assert [k.kid for k in keys if k.retired_at is None] == [new.kid]
    assert new.created_at == T0 + ROTATE + PUBLISH_AHEAD

    # until the new key activates, everyone signs with the old one
    assert {r.current_kid for r in rings} == {old}
    every_token_verifies_everywhere(rings, clock)
    for r in rings:  # the periodic refresh, within the publish-ahead window
        await r.refresh()
    clock.advance(PUBLISH_AHEAD)
    # every instance switches at the same moment, and knows the key already
    assert {r.current_kid for r in rings} == {new.kid}
    every_token_verifies_everywhere(rings, clock)


async def test_explicit_rotations_at_once_each_happen_one_key_signs(
    store_factory: StoreFactory,
) -> None:
    clock = FrozenClock(T0)
    rings = await instances(store_factory, clock, 2)
    for r in rings:
        await r.load()
    made = await asyncio.gather(*(r.rotate() for r in rings))
    assert made[0].kid != made[1].kid  # the loser retried on top of the winner
    keys = await rings[0]._store.list_signing_keys()
    assert len(keys) == 3
    assert len([k for k in keys if k.retired_at is None]) == 1
    for r in rings:
        await r.refresh()
    clock.advance(PUBLISH_AHEAD + 1)
    assert len({r.current_kid for r in rings}) == 1
    every_token_verifies_everywhere(rings, clock)


async def test_an_instance_that_missed_the_refresh_learns_the_key_on_first_sight(
    store_factory: StoreFactory,
) -> None:
    """B never refreshed between A's rotation and the activation (it was paused, or its ticks
    failed): A's first token with the new key costs B one store read, and is accepted."""
    clock = FrozenClock(T0)
    a, b = await instances(store_factory, clock, 2)
    await a.load()
    await b.load()
    new = await a.rotate()
    clock.advance(PUBLISH_AHEAD)
    assert a.current_kid == new.kid
    assert b.current_kid != new.kid  # b has not read it: keeps signing with the old key
    token = a.sign(claims(clock, 1), typ=TYP)
    assert b.unknown_kid(token) == new.kid
    await b.learn(token)
    b.verify(token, typ=TYP, audience=ISSUER)
    assert b.current_kid == new.kid  # and from now on b signs with it too
    every_token_verifies_everywhere([a, b], clock)


_STARTER = """
import asyncio, json, sys
from broker.clock import FrozenClock
from broker.storage import open_store
from tests.storage.test_keyring_stores import T0, ring

async def main():
    store = open_store(sys.argv[1], schema=sys.argv[2] or None)
    try:
        r = ring(store, FrozenClock(T0))
        await r.load()
        print(json.dumps({"kid": r.current_kid}))
    finally:
        await store.close()

asyncio.run(main())
"""


async def test_processes_starting_together_make_one_key(
    migrated: Database, store_factory: StoreFactory
) -> None:
    """Separate broker processes on one empty store: one signing key, the same everywhere."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _STARTER,
            migrated.url,
            migrated.schema or "",
            stdout=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outs = await asyncio.gather(*(p.communicate() for p in procs))
    assert [p.returncode for p in procs] == [0, 0, 0]
    kids = {json.loads(out)["kid"] for out, _ in outs}
    keys = await (await store_factory()).list_signing_keys()
    assert [k.kid for k in keys] == list(kids)
