"""Replays of a login flow's single-use values: the password-change ticket and the pending role
choice (cookies ``broker_password`` and ``broker_pending``).

Each attack copies the cookies a victim's browser held (the value itself, and in the strongest
case the browser-binding cookie too) into a fresh client and tries to get a session with them:
after the value was used, from a browser that never held it, and after logout. Every replay is
refused, issues no cookie, changes nothing and is audited; a refused request never uses the
value up for its rightful browser.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from yarl import URL

from tests.conftest import BrokerFactory, RunningBroker, trust
from tests.support.login_driver import parse_forms

NEW_PASSWORD = "correct horse battery staple"
BROWSER = "broker_csrf"
PENDING = "broker_pending"
PASSWORD = "broker_password"
SESSION = "broker_session"


@pytest.fixture
async def broker(broker_factory: BrokerFactory) -> RunningBroker:
    admin = trust("local", {"StringEquals": {"local:sub": "admin"}})
    return await broker_factory(oidc=None, roles={"local-admin": admin, "local-ops": admin})


def jar() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


@pytest.fixture
async def victim() -> AsyncIterator[aiohttp.ClientSession]:
    async with jar() as s:
        yield s


@pytest.fixture
async def attacker() -> AsyncIterator[aiohttp.ClientSession]:
    async with jar() as s:
        yield s


def cookies(s: aiohttp.ClientSession, b: RunningBroker, *names: str) -> dict[str, str]:
    found = s.cookie_jar.filter_cookies(URL(b.url))
    return {n: found[n].value for n in names if n in found}


def plant(s: aiohttp.ClientSession, b: RunningBroker, values: dict[str, str]) -> None:
    s.cookie_jar.update_cookies(values, URL(b.url))


async def form_fields(s: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, str]]:
    async with s.get(url, allow_redirects=False) as r:
        forms = parse_forms(await r.text())
        return r.status, dict(forms[0].fields) if forms else {}


async def password_login(
    s: aiohttp.ClientSession, b: RunningBroker, password: str
) -> aiohttp.ClientResponse:
    _, fields = await form_fields(s, f"{b.url}/login/local")
    data = {**fields, "username": "admin", "password": password}
    async with s.post(f"{b.url}/login/local", data=data, allow_redirects=False) as r:
        return r


async def set_password(
    s: aiohttp.ClientSession, b: RunningBroker, new: str = NEW_PASSWORD
) -> aiohttp.ClientResponse:
    status, fields = await form_fields(s, f"{b.url}/password")
    assert status == 200
    data = {**fields, "new_password": new, "confirm": new}
    async with s.post(f"{b.url}/password", data=data, allow_redirects=False) as r:
        return r


async def choose(
    s: aiohttp.ClientSession, b: RunningBroker, role: str, csrf: str | None = None
) -> aiohttp.ClientResponse:
    if csrf is None:
        status, fields = await form_fields(s, f"{b.url}/roles")
        assert status == 200
        csrf = fields["csrf"]
    async with s.post(
        f"{b.url}/roles", data={"csrf": csrf, "role": role}, allow_redirects=False
    ) as r:
        return r


@dataclass
class Pending:
    """What the victim's browser held while its role choice was pending."""

    cookies: dict[str, str]
    csrf: str


async def pending_choice(s: aiohttp.ClientSession, b: RunningBroker) -> Pending:
    """Sign in as admin (choosing the password first if needed) up to the role chooser."""
    r = await password_login(s, b, NEW_PASSWORD)
    if r.status == 401:  # first login: the one-time password, then a new password
        r = await password_login(s, b, b.broker.bootstrap_password)
        assert r.headers["Location"] == "/password"
        r = await set_password(s, b)
    assert (r.status, r.headers["Location"]) == (303, "/roles")
    status, fields = await form_fields(s, f"{b.url}/roles")
    assert status == 200
    return Pending(cookies(s, b, PENDING, BROWSER), fields["csrf"])


async def audited(b: RunningBroker, action: str, reason: str) -> bool:
    events = await b.broker.store.list_audit(action=action, limit=500)
    return any(e.outcome == "failure" and e.reason == reason for e in events)


async def sessions_of_admin(b: RunningBroker) -> int:
    events = await b.broker.store.list_audit(action="login", limit=500)
    return sum(1 for e in events if e.outcome == "success")


# --- the password-change ticket --------------------------------------------------------------


async def test_password_ticket_is_dead_once_the_password_is_changed(
    broker: RunningBroker, victim: aiohttp.ClientSession, attacker: aiohttp.ClientSession
) -> None:
    r = await password_login(victim, broker, broker.broker.bootstrap_password)
    stolen = cookies(victim, broker, PASSWORD, BROWSER)
    assert set(stolen) == {PASSWORD, BROWSER}
    _, fields = await form_fields(victim, f"{broker.url}/password")
    r = await set_password(victim, broker)
    assert r.status == 303
    user = await broker.broker.store.find_user("local", "admin")
    assert user is not None
    assert not user.must_change_password

    plant(attacker, broker, stolen)  # every cookie the victim's browser had
    status, _ = await form_fields(attacker, f"{broker.url}/password")
    assert status == 400
    data = {
        **fields,
        "new_password": "attacker's own password",
        "confirm": "attacker's own password",
    }
    async with attacker.post(f"{broker.url}/password", data=data, allow_redirects=False) as r:
        assert r.status == 400
        assert SESSION not in r.cookies
    after = await broker.broker.store.find_user("local", "admin")
    assert after is not None
    assert after.password_hash == user.password_hash
    assert await audited(
        broker, "user.password_change", "password_ticket_unknown_used_expired_or_other_browser"
    )


async def test_password_ticket_from_another_browser_is_refused_and_not_used_up(
    broker: RunningBroker, victim: aiohttp.ClientSession, attacker: aiohttp.ClientSession
) -> None:
    await password_login(victim, broker, broker.broker.bootstrap_password)
    plant(attacker, broker, cookies(victim, broker, PASSWORD))  # the ticket, not the browser
    status, _ = await form_fields(attacker, f"{broker.url}/password")
    assert status == 400
    # the rightful browser still can (and goes on to choose among its two roles)
    r = await set_password(victim, broker)
    assert (r.status, r.headers["Location"]) == (303, "/roles")
    assert PENDING in r.cookies


async def test_a_refused_new_password_leaves_the_ticket_usable(
    broker: RunningBroker, victim: aiohttp.ClientSession
) -> None:
    await password_login(victim, broker, broker.broker.bootstrap_password)
    r = await set_password(victim, broker, new="short")
    assert r.status == 400
    assert SESSION not in r.cookies
    assert await audited(broker, "user.password_change", "weak_password")
    r = await set_password(victim, broker)
    assert r.status == 303


async def test_a_second_ticket_of_the_same_user_dies_with_the_first_change(
    broker: RunningBroker, victim: aiohttp.ClientSession, attacker: aiohttp.ClientSession
) -> None:
    # Both learn the one-time password and both get a ticket; only one may set the password.
    await password_login(victim, broker, broker.broker.bootstrap_password)
    await password_login(attacker, broker, broker.broker.bootstrap_password)
    assert (await set_password(victim, broker)).status == 303
    status, fields = await form_fields(attacker, f"{broker.url}/password")
    assert status == 200  # the page still shows: the ticket itself is unused
    data = {
        **fields,
        "new_password": "attacker's own password",
        "confirm": "attacker's own password",
    }
    async with attacker.post(f"{broker.url}/password", data=data, allow_redirects=False) as r:
        assert r.status == 400
        assert SESSION not in r.cookies
    assert await audited(broker, "user.password_change", "password_change_not_pending")


# --- the pending role choice ------------------------------------------------------------------


async def test_pending_choice_is_dead_once_a_role_was_chosen(
    broker: RunningBroker, victim: aiohttp.ClientSession, attacker: aiohttp.ClientSession
) -> None:
    pending = await pending_choice(victim, broker)
    r = await choose(victim, broker, "local-ops")
    assert r.status == 303
    assert SESSION in r.cookies
    before = await sessions_of_admin(broker)

    plant(attacker, broker, pending.cookies)
    status, _ = await form_fields(attacker, f"{broker.url}/roles")
    assert status == 400
    r = await choose(attacker, broker, "local-admin", csrf=pending.csrf)
    assert r.status == 400
    assert SESSION not in r.cookies
    assert await sessions_of_admin(broker) == before
    assert await audited(
        broker, "role.choose", "pending_choice_unknown_used_expired_or_other_browser"
    )


async def test_pending_choice_from_another_browser_is_refused_and_not_used_up(
    broker: RunningBroker, victim: aiohttp.ClientSession, attacker: aiohttp.ClientSession
) -> None:
    pending = await pending_choice(victim, broker)
    plant(attacker, broker, {PENDING: pending.cookies[PENDING]})
    r = await choose(attacker, broker, "local-admin", csrf=pending.csrf)
    assert r.status == 400
    assert SESSION not in r.cookies
    r = await choose(victim, broker, "local-admin")
    assert r.status == 303
    assert SESSION in r.cookies


async def test_a_refused_role_choice_leaves_the_pending_choice_usable(
    broker: RunningBroker, victim: aiohttp.ClientSession
) -> None:
    pending = await pending_choice(victim, broker)
    r = await choose(victim, broker, "no-such-role", csrf=pending.csrf)
    assert r.status == 403
    r = await choose(victim, broker, "local-admin", csrf="forged")
    assert r.status == 403
    assert SESSION not in r.cookies
    r = await choose(victim, broker, "local-admin", csrf=pending.csrf)
    assert r.status == 303


async def test_pending_choice_is_dead_after_logout(
    broker: RunningBroker, victim: aiohttp.ClientSession, attacker: aiohttp.ClientSession
) -> None:
    await pending_choice(victim, broker)
    assert (await choose(victim, broker, "local-admin")).status == 303
    # Signed in, the same browser starts another login and leaves it at the chooser ...
    pending = await pending_choice(victim, broker)
    # ... then signs out.
    _status, fields = await form_fields(victim, f"{broker.url}/logout")
    async with victim.post(f"{broker.url}/logout", data=fields) as r:
        assert r.status == 200
    assert cookies(victim, broker, PENDING, BROWSER, SESSION) == {}

    plant(attacker, broker, pending.cookies)
    r = await choose(attacker, broker, "local-ops", csrf=pending.csrf)
    assert r.status == 400
    assert SESSION not in r.cookies


async def test_of_concurrent_choices_with_one_pending_value_one_wins(
    broker: RunningBroker, victim: aiohttp.ClientSession
) -> None:
    pending = await pending_choice(victim, broker)
    before = await sessions_of_admin(broker)
    clients = [jar() for _ in range(8)]
    try:
        for c in clients:
            plant(c, broker, pending.cookies)
        results = await asyncio.gather(
            *(choose(c, broker, "local-admin", csrf=pending.csrf) for c in clients)
        )
    finally:
        for c in clients:
            await c.close()
    assert sorted(r.status for r in results) == [303] + [400] * 7
    assert await sessions_of_admin(broker) == before + 1
