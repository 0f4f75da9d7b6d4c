"""The workers benchmark's setup works as the benchmark assumes (a smoke test, no wrk).

``bench/workers.py`` is run by hand, so nothing else would notice when a change breaks it: this
makes its session and starts ``broker serve --workers 2`` as it does, and checks that ``/auth``
allows the session at each worker. No timing is asserted.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from types import ModuleType

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def bench_module() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        import workers  # bench/workers.py

        return workers
    finally:
        sys.path.remove(str(BENCH))


async def test_the_bench_session_is_allowed_by_every_worker(tmp_path: Path) -> None:
    bench = bench_module()
    config = bench.forward_auth.write_config(tmp_path)
    cookie = await bench.session_cookie(config)
    proc, url = await asyncio.to_thread(bench.start, config, 2)
    try:
        headers = {
            "X-Original-Method": "GET",
            "X-Original-URL": bench.forward_auth.APP_URL,
            "Cookie": cookie,
        }
        pids = set()
        for _ in range(200):  # fresh connections until both workers have answered
            async with aiohttp.ClientSession() as http:
                async with http.get(f"{url}/auth", headers=headers) as r:
                    assert r.status == 200
                async with http.get(f"{url}/metrics") as r:
                    m = re.search(r'broker_worker_info\{pid="(\d+)"\}', await r.text())
                    assert m
                    pids.add(m.group(1))
            if len(pids) == 2:
                break
        assert len(pids) == 2
    finally:
        proc.terminate()
        assert await asyncio.to_thread(proc.wait, 90) == 0
