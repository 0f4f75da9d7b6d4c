"""``broker serve --workers 2`` as a real process tree, on SQLite and on PostgreSQL (issue 17).

The supervisor binds the socket and does the first start once, then forks the workers; they
share only the socket and the store. To talk to one given worker a test keeps one keep-alive
connection to it (:class:`Pinned`): ``/metrics`` names the worker that answered
(``broker_worker_info{pid=...}``). Deadlines are polled, never measured: the only bound is
contract C4's 2 s for a revocation to reach every worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from broker.service.container import KEY_CHECK_SECONDS
from tests.conftest import ALLOW_ALL, E2E_ROLES
from tests.e2e.test_two_processes import APP, COOKIE, OTP, PASSWORD, ROLE, _config, sign_in
from tests.support.broker_process import BrokerProcess, broker_processes, run_cli_async
from tests.support.login_driver import parse_forms
from tests.support.oidc_server import free_port
from tests.support.postgres import fresh_schema

CONTRACT = 2.0  # C4: a revocation is refused by every instance (here: worker) within 2 s
WAIT = 30.0  # a bound on "eventually" for everything else, not a timing assertion
WORKER_PID = re.compile(r'broker_worker_info\{pid="(\d+)"\} 1')
NEW_ROLE = "reloaded"


def children(pid: int) -> set[int]:
    """The live child processes of ``pid`` (zombies, already dead, excluded)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        state, ppid = text[text.rindex(")") + 2 :].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(stat.parent.name))
    return found


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.05)


@dataclass
class Served:
    p: BrokerProcess
    pinned: dict[int, Pinned] = field(default_factory=dict)
    password_changed: bool = False  # from the one-time password to PASSWORD

    @property
    def pid(self) -> int:
        return self.p.proc.pid

    def workers(self) -> set[int]:
        return children(self.pid)

    def stderr_count(self, pattern: str) -> int:
        return len(re.findall(pattern, self.p.stderr()))

    async def pin_each_worker(self) -> dict[int, Pinned]:
        """One open connection to every live worker (and none to workers that are gone)."""
        for pid in set(self.pinned) - self.workers():
            await self.pinned.pop(pid).close()

        async def all_pinned() -> bool:
            pin = Pinned(self.p.url)
            try:
                pid = await pin.pid()
            except aiohttp.ClientError:
                pid = 0  # a worker that is going away
            if pid in self.pinned or pid not in self.workers():
                await pin.close()
            else:
                self.pinned[pid] = pin
            return set(self.pinned) == self.workers() and len(self.pinned) == 2

        await eventually(all_pinned, "a connection to each of the 2 workers")
        return self.pinned


class Pinned:
    """One keep-alive connection: every request on it goes to the worker that accepted it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1), cookie_jar=aiohttp.DummyCookieJar()
        )
        self.worker = 0

    async def pid(self) -> int:
        async with self.session.get(f"{self.url}/metrics") as r:
            m = WORKER_PID.search(await r.text())
        assert m, "no broker_worker_info in /metrics"
        pid = int(m.group(1))
        assert self.worker in (0, pid), "the connection was not kept"
        self.worker = pid
        return pid

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        await self.pid()
        async with self.session.get(f"{self.url}{path}", headers=headers) as r:
            return r.status, await r.text()

    async def auth(self, token: str) -> tuple[int, int]:
        """``/auth`` as nginx asks it, with the token as a cookie, then as a bearer token."""
        headers = {"X-Original-Method": "GET", "X-Original-URL": f"{APP}/x"}
        cookie, _ = await self.get("/auth", headers={**headers, "Cookie": f"{COOKIE}={token}"})
        bearer, _ = await self.get("/auth", headers={**headers, "Authorization": f"Bearer {token}"})
        return cookie, bearer

    async def close(self) -> None:
        await self.session.close()


@asynccontextmanager
async def store_url(kind: str) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield "sqlite:///broker.db"
    else:
        async with fresh_schema("broker_workers") as url:
            yield url


@pytest.fixture
def rotate_every() -> str | None:
    """``[keys] rotate_every``, unless a test parametrizes it: the default (7 days)."""
    return None


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
async def served(
    request: pytest.FixtureRequest, tmp_path: Path, rotate_every: str | None
) -> AsyncIterator[Served]:
    async with store_url(request.param) as url:
        port = free_port()
        config = _config(tmp_path / "w", port, url, f"http://127.0.0.1:{port}")
        if rotate_every is not None:
            keys = f'[keys]\nrotate_every = "{rotate_every}"\n'
            config.write_text(config.read_text().replace("[keys]\n", keys))
        with broker_processes(tmp_path / "logs") as procs:
            p = procs.start(config, "w", port, workers=2)
            await p.wait_ready()
            s = Served(p)
            try:
                await s.pin_each_worker()
                yield s
            finally:
                for pin in s.pinned.values():
                    await pin.close()


def _browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def signed_in(s: Served) -> str:
    """A session token of ``admin`` (signing in with the one-time password the first time)."""
    async with _browser() as browser:
        if not s.password_changed:
            token = await sign_in(browser, s.p, OTP.findall(s.p.stdout())[0], PASSWORD)
            s.password_changed = True
        else:
            token = await sign_in(browser, s.p, PASSWORD)
    assert token
    return token


async def logged_out(s: Served) -> str:
    """A session token that was signed in, then signed out (through whichever worker)."""
    async with _browser() as browser:
        token = await sign_in(browser, s.p, PASSWORD)
        assert token
        async with browser.get(f"{s.p.url}/logout") as r:
            (form,) = [f for f in parse_forms(await r.text()) if f.action == "/logout"]
        async with browser.post(f"{s.p.url}/logout", data=dict(form.fields)) as r:
            assert r.status == 200
    return token


async def refused_by_every_worker(s: Served, token: str, within: float) -> None:
    deadline = time.monotonic() + within
    for pin in s.pinned.values():
        while (got := await pin.auth(token)) != (401, 401):
            assert time.monotonic() < deadline, f"worker {pin.worker} still answers {got}"
            await asyncio.sleep(0.05)


@dataclass
class Hammer:
    """Fresh-connection ``/auth`` requests in a loop, each answer counted by token kind."""

    url: str
    tokens: dict[str, str]
    seen: dict[str, Counter[str]] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        headers = {"X-Original-Method": "GET", "X-Original-URL": f"{APP}/x"}
        connector = aiohttp.TCPConnector(force_close=True)  # a new connection per request
        async with aiohttp.ClientSession(connector=connector) as http:
            while not self._stop.is_set():
                for kind, token in self.tokens.items():
                    try:
                        async with http.get(
                            f"{self.url}/auth",
                            headers={**headers, "Authorization": f"Bearer {token}"},
                        ) as r:
                            outcome = str(r.status)
                    except aiohttp.ClientError as e:
                        outcome = type(e).__name__
                    self.seen.setdefault(kind, Counter())[outcome] += 1

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Hammer]:
        task = asyncio.create_task(self.run())
        try:
            yield self
        finally:
            self._stop.set()
            await task


class SlowRequest:
    """A request in flight on its own connection: its body is sent in two halves, so that it
    is still being handled when the worker is told to stop."""

    BODY = b"grant_type=not-a-grant-type"

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.worker = 0

    @classmethod
    async def to_worker(cls, port: int, wanted: set[int]) -> dict[int, SlowRequest]:
        """One slow request to each worker of ``wanted`` (asks ``/metrics`` on the connection
        first, to know which worker it is)."""
        found: dict[int, SlowRequest] = {}
        deadline = time.monotonic() + WAIT
        while set(found) != wanted:
            assert time.monotonic() < deadline, f"no connection to each of {wanted}"
            req = cls(*await asyncio.open_connection("127.0.0.1", port))
            status, body = await req.exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            m = WORKER_PID.search(body.decode())
            assert status == 200
            assert m
            pid = int(m.group(1))
            if pid in found or pid not in wanted:
                await req.close()
                continue
            req.worker = pid
            head = (
                "POST /oauth2/token HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(cls.BODY)}\r\n\r\n"
            ).encode()
            req.writer.write(head + cls.BODY[:5])
            await req.writer.drain()
            found[pid] = req
        return found

    async def exchange(self, data: bytes) -> tuple[int, bytes]:
        self.writer.write(data)
        await self.writer.drain()
        return await self.response()

    async def response(self) -> tuple[int, bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        assert length, head
        return status, await self.reader.readexactly(int(length.group(1)))

    async def finish(self) -> tuple[int, bytes]:
        """Send the rest of the body; the answer (it was handled to the end)."""
        return await self.exchange(self.BODY[5:])

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


# --- the tests -------------------------------------------------------------------------------


async def test_both_workers_answer_and_the_first_start_happened_once(served: Served) -> None:
    s = served
    assert set(s.pinned) == s.workers()
    assert len(OTP.findall(s.p.stdout())) == 1  # printed once, by the supervisor
    assert s.stderr_count("no signing key could sign: made one") == 1
    kids = set()
    for pin in s.pinned.values():
        status, _ = await pin.get("/.well-known/jwks.json")
        assert status == 200
        async with pin.session.get(f"{s.p.url}/.well-known/jwks.json") as r:
            kids |= {k["kid"] for k in (await r.json())["keys"]}
    assert len(kids) == 1  # one signing key, the same at both

    # /metrics on either worker counts the requests both served
    a, b = s.pinned.values()
    for pin, n in ((a, 3), (b, 4)):
        for _ in range(n):
            assert (await pin.get("/healthz"))[0] == 200
    healthz = re.compile(r'broker_http_requests_total\{route="/healthz",status="200"\} (\d+)')

    async def both_count_7() -> bool:
        counts = []
        for pin in (a, b):
            _, text = await pin.get("/metrics")
            m = healthz.search(text)
            counts.append(int(m.group(1)) if m else 0)
        return counts == [7, 7]

    await eventually(both_count_7, "each worker's /metrics counts both workers' requests")


async def test_a_revocation_at_one_worker_is_refused_by_every_worker_within_2_s(
    served: Served,
) -> None:
    s = served
    token = await signed_in(s)
    for pin in s.pinned.values():
        assert await pin.auth(token) == (200, 200)

    # a logout through a browser, at whichever worker takes its connection
    ended = await logged_out(s)
    await refused_by_every_worker(s, ended, CONTRACT)
    for pin in s.pinned.values():
        assert await pin.auth(token) == (200, 200)  # the other session still works

    # a user disabled through the CLI (another process, on the same store)
    r = await run_cli_async("admin", "users", "disable", "admin", "--config", str(s.p.config))
    assert r.returncode == 0, r.stderr
    await refused_by_every_worker(s, token, CONTRACT)


async def test_a_killed_worker_is_replaced_and_nothing_is_wrongly_allowed_meanwhile(
    served: Served,
) -> None:
    s = served
    valid = await signed_in(s)
    revoked = await logged_out(s)
    await refused_by_every_worker(s, revoked, CONTRACT)
    tokens = {"valid": valid, "revoked": revoked, "garbage": "not-a-token"}

    victim, survivor = sorted(s.pinned)
    async with Hammer(s.p.url, tokens).running() as hammer:
        os.kill(victim, signal.SIGKILL)

        async def replaced() -> bool:
            return len(s.workers() - {victim, survivor}) == 1

        await eventually(replaced, "a new worker in place of the killed one")
        pinned = await s.pin_each_worker()
        assert survivor in pinned
        assert victim not in pinned
        await eventually(
            lambda: asyncio.sleep(0.2, result=sum(hammer.seen["valid"].values()) > 10),
            "requests after the replacement",
        )
    for pin in pinned.values():
        assert await pin.auth(valid) == (200, 200)
        assert await pin.auth(revoked) == (401, 401)
    seen = hammer.seen
    assert set(seen["valid"]) - {"ServerDisconnectedError", "ClientOSError"} <= {"200"}, seen
    for kind in ("revoked", "garbage"):
        assert not any(k.startswith("2") for k in seen[kind]), seen
        assert "401" in seen[kind], seen
    assert s.p.proc.poll() is None
    assert s.stderr_count(rf"\(pid {victim}\) died \(killed by SIGKILL\)") == 1


def _add_role(config: Path) -> None:
    (config.parent / f"{NEW_ROLE}-trust.json").write_text(json.dumps(E2E_ROLES[ROLE]))
    (config.parent / f"{NEW_ROLE}-access.json").write_text(json.dumps(ALLOW_ALL))
    with config.open("a") as f:
        f.write(
            f'\n[roles.{NEW_ROLE}]\ndescription = "Added by a reload"\n'
            f'trust_policy = "{NEW_ROLE}-trust.json"\npolicies = ["{NEW_ROLE}-access.json"]\n'
        )


async def roles_at(pin: Pinned, token: str) -> set[str]:
    status, text = await pin.get("/v1/roles", headers={"Authorization": f"Bearer {token}"})
    assert status == 200, text
    return {r["name"] for r in json.loads(text)["roles"]}


async def test_sighup_reloads_one_worker_at_a_time_and_a_bad_config_is_refused(
    served: Served,
) -> None:
    s = served
    token = await signed_in(s)
    old = set(s.pinned)
    for pin in s.pinned.values():
        assert await roles_at(pin, token) == {ROLE}

    slow = await SlowRequest.to_worker(s.p.port, old)  # in flight at each old worker
    async with Hammer(s.p.url, {"valid": token}).running() as hammer:
        _add_role(s.p.config)
        os.kill(s.pid, signal.SIGHUP)

        async def taken_over() -> bool:
            return s.stderr_count(r"worker \d: pid \d+ replaces pid \d+") == 2

        await eventually(taken_over, "both workers replaced")
        for req in slow.values():  # the old workers still finish their requests, in full
            status, body = await req.finish()
            assert (status, b"unsupported_grant_type" in body) == (400, True), body
            await req.close()

        async def old_ones_gone() -> bool:
            return not (old & s.workers())

        await eventually(old_ones_gone, "the old workers exited once their requests were done")
        new = await s.pin_each_worker()
        assert not (set(new) & old)
    assert set(hammer.seen["valid"]) == {"200"}, hammer.seen  # no request failed meanwhile
    for pin in new.values():
        assert await roles_at(pin, token) == {ROLE, NEW_ROLE}
    assert s.stderr_count(r"replaced worker \(pid \d+\) stopped: exit 0") == 2

    s.p.config.write_text(s.p.config.read_text() + "\nthis is [not toml\n")
    os.kill(s.pid, signal.SIGHUP)

    async def refused() -> bool:
        return s.stderr_count("the config was not reloaded") == 1

    await eventually(refused, "the bad config is refused")
    assert "not valid TOML" in s.p.stderr()
    assert s.workers() == set(new)  # the same workers, still serving
    for pin in new.values():
        assert await pin.auth(token) == (200, 200)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stop_finishes_requests_in_flight_and_exits_0(
    served: Served, sig: signal.Signals
) -> None:
    s = served
    slow = await SlowRequest.to_worker(s.p.port, set(s.pinned))
    s.p.proc.send_signal(sig)

    async def not_accepting() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", s.p.port)
        except OSError:
            return True
        writer.close()
        return False

    await eventually(not_accepting, "no new connection is accepted")
    for req in slow.values():
        status, body = await req.finish()
        assert (status, b"unsupported_grant_type" in body) == (400, True), body
        await req.close()
    assert await asyncio.to_thread(s.p.proc.wait, WAIT) == 0, s.p.describe()
    assert f"{sig.name}: stopping 2 worker(s)" in s.p.stderr()
    assert "all workers have stopped" in s.p.stderr()
    assert "Traceback" not in s.p.stderr()


async def test_workers_stop_when_the_supervisor_is_killed(served: Served) -> None:
    s = served
    workers = s.workers()
    s.p.proc.kill()  # SIGKILL: the supervisor cannot tell its workers anything
    s.p.proc.wait()

    async def gone() -> bool:
        alive = []
        for pid in workers:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        return not alive

    await eventually(gone, "the orphaned workers stopped themselves")
    assert s.p.stderr().count("the supervisor (pid") == 2


@pytest.mark.parametrize("rotate_every", ["5s"])
async def test_a_scheduled_rotation_happens_once_among_the_workers(served: Served) -> None:
    """Both workers started together find the key due at their key check, at about the same
    moment: one rotates, the other gives way (a compare-and-swap in the store)."""
    s = served

    async def kids_everywhere() -> list[set[str]]:
        found = []
        for pin in s.pinned.values():
            _, text = await pin.get("/.well-known/jwks.json")
            found.append({k["kid"] for k in json.loads(text)["keys"]})
        return found

    async def rotated() -> bool:
        return all(len(kids) == 2 for kids in await kids_everywhere())

    await eventually(rotated, "a second key at both workers", KEY_CHECK_SECONDS + WAIT)
    await asyncio.sleep(KEY_CHECK_SECONDS + 2)  # every worker has had its key check since
    first, second = await kids_everywhere()
    assert first == second
    assert len(first) == 2
    r = await run_cli_async(
        "audit", "list", "--action", "keys.rotate", "--json", "--config", str(s.p.config)
    )
    assert r.returncode == 0, r.stderr
    assert [e["principal"] in first for e in json.loads(r.stdout)] == [True]
