"""The forward-auth benchmark's server half answers as the benchmark assumes (a smoke test).

``bench/forward_auth.py`` is run by hand (it needs ``wrk``), so nothing else would notice when a
change to the broker breaks it. This starts its server process as the benchmark does and checks
each of its four endpoints once: the broker allows the session cookie and a fresh token, and the
floor sends exactly the identity headers the broker sends. No timing is asserted.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench" / "forward_auth.py"
APP_URL = "https://app.example.com/dashboards/1"
IDENTITY = [
    "X-Auth-Request-User",
    "X-Auth-Request-Email",
    "X-Auth-Request-Groups",
    "X-Auth-Request-Role",
    "X-Auth-Request-Session",
    "X-Auth-Request-Assertion",
]


@pytest.fixture
def bench_server(tmp_path: Path) -> Iterator[dict[str, Any]]:
    sys.path.insert(0, str(BENCH.parent))
    try:
        import forward_auth as bench  # bench/forward_auth.py, not broker.web.forward_auth
    finally:
        sys.path.remove(str(BENCH.parent))
    with bench.bench_server(tmp_path, fresh_tokens=3) as ready:
        ready["token_list"] = Path(ready["tokens"]).read_text().split()
        yield ready


async def test_bench_endpoints_answer_as_the_benchmark_assumes(
    bench_server: dict[str, Any],
) -> None:
    ready = bench_server
    tokens = ready["token_list"]
    assert len(set(tokens)) == 3
    session = {"X-Original-Method": "GET", "X-Original-URL": APP_URL, "Cookie": ready["cookie"]}
    fresh = {"X-Original-Method": "GET", "X-Original-URL": APP_URL}

    async with aiohttp.ClientSession() as http:

        async def get(server: str, headers: dict[str, str]) -> aiohttp.ClientResponse:
            url = f"http://127.0.0.1:{ready[server]}/auth"
            async with http.get(url, headers=headers, allow_redirects=False) as r:
                await r.read()
                return r

        allowed = await get("broker", session)
        assert allowed.status == 200
        assert allowed.headers["X-Auth-Request-User"] == "local/bench"
        floor = await get("floor", session)
        assert floor.status == 200
        assert [floor.headers[h] for h in IDENTITY] == [allowed.headers[h] for h in IDENTITY]
        assert (await get("bare", session)).status == 200
        for token in tokens:
            bearer = {**fresh, "Authorization": f"Bearer {token}"}
            assert (await get("verify", bearer)).status == 200
            by_broker = await get("broker", bearer)
            assert by_broker.status == 200
            assert by_broker.headers["X-Auth-Request-User"] == "local/bench"
        forged = {**fresh, "Authorization": f"Bearer {tokens[0][:-4]}AAAA"}
        assert (await get("broker", forged)).status == 401
