"""TOTP checks and ``MfaService`` on a real (SQLite) store and a frozen clock: the ±1 step
window, single use (a code of a step at or below the last accepted one is refused, also when
two requests race with it), wrong and malformed codes, the constant-time comparison, the
per-user rate limit, enabling with two consecutive codes, and audited refusals that never
carry the seed or the code."""

from __future__ import annotations

import asyncio
import hmac
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from unittest import mock

import pyotp
import pytest

from broker.clock import FrozenClock
from broker.config import LoginConfig
from broker.errors import (
    AlreadyExists,
    AuditUnavailable,
    Conflict,
    InvalidMfaCode,
    LimitExceeded,
    NotFound,
    RateLimited,
)
from broker.service import totp
from broker.service.audit import Auditor, RequestInfo
from broker.service.mfa import MfaService
from broker.storage import SqlStore, migrate, open_store
from broker.storage.base import User

KEK = bytes(range(32))
REQ = RequestInfo(request_id="t", source_ip="192.0.2.7")
T0 = 1_700_000_010.0  # 10 s into a 30 s step


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    url = f"sqlite:///{tmp_path / 'broker.db'}"
    await migrate(url)
    s = open_store(url)
    yield s
    await s.close()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
async def auditor(store: SqlStore, clock: FrozenClock) -> AsyncIterator[Auditor]:
    a = Auditor(store, clock)
    yield a
    await a.close()


@pytest.fixture
def mfa(store: SqlStore, auditor: Auditor, clock: FrozenClock) -> MfaService:
    limits = LoginConfig(max_failures_per_user=5, failure_window=900)
    return MfaService(store, auditor, clock, kek=KEK, limits=limits, account_id="000000000000")


async def _user(store: SqlStore, name: str = "alice") -> User:
    return await store.create_user(
        User(id=f"id-{name}", provider="local", subject=name, name=name, created_at=T0)
    )


async def _enabled(mfa: MfaService, store: SqlStore, clock: FrozenClock) -> tuple[User, pyotp.TOTP]:
    """alice with an enabled device; the codes up to the current step are used."""
    user = await _user(store)
    new = await mfa.create_virtual_device("alice-phone", actor="root", req=REQ)
    otp = pyotp.TOTP(new.seed)
    now = clock.now()
    await mfa.enable(
        new.device.serial_number, user.id, otp.at(now - 30), otp.at(now), actor="root", req=REQ
    )
    return user, otp


async def _audit(store: SqlStore, auditor: Auditor) -> list[str]:
    await auditor.flush()
    return [json.dumps(e.__dict__, default=str) for e in await store.list_audit(limit=1000)]


# --- pure TOTP checks -----------------------------------------------------------------------


SEED = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.mark.parametrize(
    ("offset_steps", "accepted"),
    [(-2, False), (-1, True), (0, True), (1, True), (2, False)],
    ids=["two-before", "one-before", "current", "one-after", "two-after"],
)
def test_window_is_one_step_either_side(offset_steps: int, accepted: bool) -> None:
    code = pyotp.TOTP(SEED).at(T0 + 30 * offset_steps)
    step = totp.matching_step(SEED, code, now=T0, after=0)
    assert (step == totp.time_step(T0) + offset_steps) if accepted else step is None


@pytest.mark.parametrize(
    "code",
    ["", "12345", "1234567", "12345a", " 12345", "١٢٣٤٥٦", "123 45"],
    ids=["empty", "short", "long", "letter", "space", "arabic-digits", "inner-space"],
)
def test_malformed_codes_are_refused_before_any_check(code: str) -> None:
    with mock.patch("broker.service.totp.hmac.compare_digest") as compare:
        assert totp.matching_step(SEED, code, now=T0, after=0) is None
    compare.assert_not_called()


def test_a_code_at_or_below_the_last_step_is_refused() -> None:
    code = pyotp.TOTP(SEED).at(T0)
    step = totp.time_step(T0)
    assert totp.matching_step(SEED, code, now=T0, after=step - 1) == step
    assert totp.matching_step(SEED, code, now=T0, after=step) is None
    assert totp.matching_step(SEED, code, now=T0, after=step + 1) is None


def test_every_candidate_is_compared_in_constant_time() -> None:
    """``hmac.compare_digest`` against each step of the window, also after a match (no early
    exit that would tell which step matched), and never ``==`` on the code."""
    code = pyotp.TOTP(SEED).at(T0 - 30)  # matches the first candidate
    with mock.patch(
        "broker.service.totp.hmac.compare_digest", wraps=hmac.compare_digest
    ) as compare:
        assert totp.matching_step(SEED, code, now=T0, after=0) == totp.time_step(T0) - 1
    assert compare.call_count == 2 * totp.WINDOW + 1
    assert all(call.args[1] == code.encode() for call in compare.call_args_list)


def test_two_consecutive_codes() -> None:
    otp = pyotp.TOTP(SEED)
    step = totp.time_step(T0)
    assert totp.consecutive_steps(SEED, otp.at(T0 - 30), otp.at(T0), now=T0, after=0) == step
    assert totp.consecutive_steps(SEED, otp.at(T0), otp.at(T0 + 30), now=T0, after=0) == step + 1
    assert totp.consecutive_steps(SEED, otp.at(T0), otp.at(T0), now=T0, after=0) is None
    assert totp.consecutive_steps(SEED, otp.at(T0), otp.at(T0 - 30), now=T0, after=0) is None
    assert totp.consecutive_steps(SEED, otp.at(T0 - 30), otp.at(T0), now=T0, after=step - 1) is None


def test_qr_svg_has_no_style_or_script_for_the_csp() -> None:
    svg = totp.qr_svg(totp.provisioning_uri(SEED, account="alice", issuer="broker.test"))
    assert svg.startswith("<svg")
    assert "style" not in svg
    assert "script" not in svg
    assert "<?xml" not in svg
    assert totp.qr_png("otpauth://totp/x?secret=" + SEED).startswith(b"\x89PNG\r\n\x1a\n")


# --- MfaService -----------------------------------------------------------------------------


async def test_seed_is_sealed_and_bound_to_its_serial(mfa: MfaService, store: SqlStore) -> None:
    new = await mfa.create_virtual_device("d1", actor="root", req=REQ)
    stored = await store.get_mfa_device(new.device.serial_number)
    assert stored is not None
    assert stored.user_id is None
    assert new.seed.encode() not in stored.seed_sealed
    assert mfa.seed_of(stored) == new.seed
    assert stored.serial_number == "arn:broker:iam::000000000000:mfa/d1"
    with pytest.raises(AlreadyExists):
        await mfa.create_virtual_device("d1", actor="root", req=REQ)


async def test_verify_accepts_a_code_once(
    mfa: MfaService, store: SqlStore, auditor: Auditor, clock: FrozenClock
) -> None:
    user, otp = await _enabled(mfa, store, clock)
    clock.advance(30)
    code = otp.at(clock.now())
    proof = await mfa.verify(user.id, None, code, req=REQ, purpose="login.mfa")
    assert proof is not None
    assert proof.authenticated_at == clock.now()
    # the same code again: refused, on this or the same step
    assert await mfa.verify(user.id, None, code, req=REQ, purpose="login.mfa") is None
    # an earlier step's code (inside the window, but at or below the last used): refused
    assert await mfa.verify(user.id, None, otp.at(clock.now() - 30), req=REQ, purpose="x") is None
    # the next step's code is fine (window +1)
    assert await mfa.verify(user.id, None, otp.at(clock.now() + 30), req=REQ, purpose="x")
    text = "\n".join(await _audit(store, auditor))
    assert "mfa_code_wrong_or_used" in text
    assert otp.secret not in text
    assert code not in text


async def test_enable_codes_cannot_log_in(
    mfa: MfaService, store: SqlStore, clock: FrozenClock
) -> None:
    user, otp = await _enabled(mfa, store, clock)
    assert await mfa.verify(user.id, None, otp.at(clock.now()), req=REQ, purpose="x") is None


async def test_concurrent_use_of_one_code_lets_one_through(
    mfa: MfaService, store: SqlStore, clock: FrozenClock
) -> None:
    user, otp = await _enabled(mfa, store, clock)
    clock.advance(30)
    code = otp.at(clock.now())
    results = await asyncio.gather(
        *(mfa.verify(user.id, None, code, req=REQ, purpose="x") for _ in range(5))
    )
    assert sum(r is not None for r in results) == 1


async def test_wrong_serial_or_other_users_device_is_refused(
    mfa: MfaService, store: SqlStore, clock: FrozenClock
) -> None:
    user, otp = await _enabled(mfa, store, clock)
    bob = await _user(store, "bob")
    clock.advance(30)
    code = otp.at(clock.now())
    other = "arn:broker:iam::000000000000:mfa/other"
    assert await mfa.verify(user.id, other, code, req=REQ, purpose="x") is None
    assert await mfa.verify(bob.id, None, code, req=REQ, purpose="x") is None
    serial = mfa.serial_number("alice-phone")
    assert await mfa.verify(bob.id, serial, code, req=REQ, purpose="x") is None
    assert await mfa.verify(user.id, serial, code, req=REQ, purpose="x") is not None


async def test_wrong_codes_are_rate_limited_per_user(
    mfa: MfaService, store: SqlStore, auditor: Auditor, clock: FrozenClock
) -> None:
    user, otp = await _enabled(mfa, store, clock)
    clock.advance(30)
    good = otp.at(clock.now())
    wrong = f"{(int(good) + 1) % 1_000_000:06d}"
    for _ in range(5):
        assert await mfa.verify(user.id, None, wrong, req=REQ, purpose="login.mfa") is None
    # over the limit: even the right code is not checked (and not used up)
    with pytest.raises(RateLimited) as e:
        await mfa.verify(user.id, None, good, req=REQ, purpose="login.mfa")
    assert e.value.retry_after is not None
    assert e.value.retry_after > 0
    assert "mfa_too_many_failures" in "\n".join(await _audit(store, auditor))
    # another user is not limited by alice's failures
    assert await mfa.verify("id-nobody", None, good, req=REQ, purpose="x") is None
    clock.advance(901)
    assert await mfa.verify(user.id, None, otp.at(clock.now()), req=REQ, purpose="x") is not None


async def test_enable_rules(mfa: MfaService, store: SqlStore, clock: FrozenClock) -> None:
    user, otp = await _enabled(mfa, store, clock)
    serial = mfa.serial_number("alice-phone")
    now = clock.now()
    # in use already
    with pytest.raises(AlreadyExists):
        await mfa.enable(serial, user.id, otp.at(now), otp.at(now + 30), actor="root", req=REQ)
    # a second device for the same user: deactivate first
    second = await mfa.create_virtual_device("spare", actor="root", req=REQ)
    o2 = pyotp.TOTP(second.seed)
    with pytest.raises(LimitExceeded):
        await mfa.enable(
            second.device.serial_number, user.id, o2.at(now - 30), o2.at(now), actor="r", req=REQ
        )
    # wrong codes for a fresh device
    bob = await _user(store, "bob")
    with pytest.raises(InvalidMfaCode):
        await mfa.enable(
            second.device.serial_number, bob.id, o2.at(now), o2.at(now), actor="r", req=REQ
        )
    with pytest.raises(NotFound):
        await mfa.enable(mfa.serial_number("nope"), bob.id, "123456", "654321", actor="r", req=REQ)
    # deleting an enabled device is a conflict; deactivated, it goes
    with pytest.raises(Conflict):
        await mfa.delete(serial, actor="root", req=REQ)
    await mfa.deactivate(serial, user.id, actor="root", req=REQ)
    assert await mfa.enabled_device(user.id) is None
    await mfa.delete(serial, actor="root", req=REQ)
    assert await store.get_mfa_device(serial) is None


async def test_deactivate_with_a_code_uses_it(
    mfa: MfaService, store: SqlStore, clock: FrozenClock
) -> None:
    user, otp = await _enabled(mfa, store, clock)
    serial = mfa.serial_number("alice-phone")
    with pytest.raises(InvalidMfaCode):  # the enable's own code is used
        await mfa.deactivate(serial, user.id, actor="a", req=REQ, code=otp.at(clock.now()))
    clock.advance(30)
    await mfa.deactivate(serial, user.id, actor="a", req=REQ, code=otp.at(clock.now()))
    device = await store.get_mfa_device(serial)
    assert device is not None
    assert device.user_id is None
    assert device.last_step == totp.time_step(clock.now())


async def test_resync_checks_two_codes_and_uses_them(
    mfa: MfaService, store: SqlStore, clock: FrozenClock
) -> None:
    user, otp = await _enabled(mfa, store, clock)
    serial = mfa.serial_number("alice-phone")
    clock.advance(60)
    now = clock.now()
    with pytest.raises(InvalidMfaCode):
        await mfa.resync(serial, user.id, otp.at(now), otp.at(now), actor="a", req=REQ)
    await mfa.resync(serial, user.id, otp.at(now - 30), otp.at(now), actor="a", req=REQ)
    assert await mfa.verify(user.id, None, otp.at(now), req=REQ, purpose="x") is None


def _audit_down(path: Path) -> None:
    """Every insert into ``audit_events`` fails from now on (the rest of the store works)."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events "
            "BEGIN SELECT RAISE(ABORT, 'audit store down'); END"
        )


async def test_resync_is_not_made_without_its_audit_row(
    mfa: MfaService, store: SqlStore, clock: FrozenClock, tmp_path: Path
) -> None:
    user, otp = await _enabled(mfa, store, clock)
    serial = mfa.serial_number("alice-phone")
    before = await store.get_mfa_device(serial)
    assert before is not None
    clock.advance(60)
    now = clock.now()
    _audit_down(tmp_path / "broker.db")
    with pytest.raises(AuditUnavailable):
        await mfa.resync(serial, user.id, otp.at(now - 30), otp.at(now), actor="a", req=REQ)
    after = await store.get_mfa_device(serial)
    assert after is not None
    assert after.last_step == before.last_step  # the codes were not used up
