"""Benchmark (not a test): AssumeRoleWithWebIdentity requests/s next to a bare aiohttp handler
that does one ID-token signature verification plus one signing, measured in the same run.

    .venv/bin/python -m bench.sts [--seconds 3] [--concurrency 16]

Everything runs on 127.0.0.1 in one process: the fake OpenID provider (RS256, from
``tests/support/fake_idp.py``), the broker (SQLite store in a temporary directory, EdDSA keys) and
the baseline. Each side is warmed up, then driven for ``--seconds`` by ``--concurrency`` client
tasks (bounded: at most ``--max-requests`` each). The broker's requests are real STS requests,
each with its own ID token (minted beforehand), and each verified, trust-evaluated, signed and
audited. Prints both rates and the ratio (goal: >= 0.5x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ed25519

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker.clock import SystemClock
from broker.config import load_settings
from broker.runtime import tune_for_serving
from broker.web.app import create_app
from tests.conftest import ALLOW_ALL, trust, write_config
from tests.support.fake_idp import FakeIdP
from tests.support.oidc_server import free_port

ROLE_ARN = "arn:broker:iam::000000000000:role/ci"


async def serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def baseline_app(idp: FakeIdP) -> web.Application:
    """One RS256 verification (the IdP's key) and one EdDSA signing per request."""
    public = idp.signing_key.public_key
    signer = ed25519.Ed25519PrivateKey.generate()

    async def handler(request: web.Request) -> web.Response:
        form = await request.post()
        claims = jwt.decode(
            str(form["WebIdentityToken"]), public, algorithms=["RS256"], audience=idp.client_id
        )
        token = jwt.encode(
            {"sub": claims["sub"], "exp": int(time.time()) + 3600}, signer, algorithm="EdDSA"
        )
        return web.Response(text=token)

    app = web.Application()
    app.router.add_post("/", handler)
    return app


async def drive(
    url: str,
    body_for: Callable[[int], dict[str, str]],
    *,
    seconds: float,
    concurrency: int,
    max_requests: int,
) -> float:
    """Requests per second over ``seconds`` (every answer must be 200)."""
    counter = 0
    stop_at = time.perf_counter() + seconds

    async def worker(session: aiohttp.ClientSession) -> int:
        nonlocal counter
        done = 0
        while time.perf_counter() < stop_at and done < max_requests:
            i = counter
            counter += 1
            async with session.post(url, data=body_for(i)) as r:
                await r.read()
                if r.status != 200:
                    raise RuntimeError(f"{url}: {r.status} {await r.text()}")
            done += 1
        return done

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        totals = await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return sum(totals) / elapsed


async def main(args: argparse.Namespace) -> None:
    clock = SystemClock()
    idp = FakeIdP(clock=clock)
    idp_port = free_port()
    idp.issuer = f"http://127.0.0.1:{idp_port}"
    runners = [await serve(idp.app, idp_port)]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            extra = f'[providers.fake]\nissuer = "{idp.issuer}"\nclient_id = "{idp.client_id}"\n'
            roles = {"ci": trust("fake", {"StringEquals": {"fake:aud": idp.client_id}})}
            path = write_config(Path(tmp), port=port, oidc=None, roles=roles, extra=extra)
            assert json.loads((Path(tmp) / "ci-access.json").read_text()) == ALLOW_ALL
            settings = load_settings(path)
            runners.append(await serve(create_app(settings), port))
            base_port = free_port()
            runners.append(await serve(baseline_app(idp), base_port))

            budget = args.concurrency * args.max_requests + 1000
            tokens = [idp.mint({"sub": f"user-{i % 50}"}) for i in range(min(budget, 50_000))]
            tune_for_serving()  # as `broker serve` does once started

            def sts_body(i: int) -> dict[str, str]:
                return {
                    "Action": "AssumeRoleWithWebIdentity",
                    "Version": "2011-06-15",
                    "RoleArn": ROLE_ARN,
                    "RoleSessionName": "bench",
                    "WebIdentityToken": tokens[i % len(tokens)],
                }

            broker_url = f"http://127.0.0.1:{port}/"
            base_url = f"http://127.0.0.1:{base_port}/"
            common: dict[str, Any] = {
                "concurrency": args.concurrency,
                "max_requests": args.max_requests,
            }
            # warm-up (JWKS fetch, connections, caches)
            await drive(broker_url, sts_body, seconds=0.5, **common)
            await drive(base_url, sts_body, seconds=0.5, **common)
            broker_rps = await drive(broker_url, sts_body, seconds=args.seconds, **common)
            base_rps = await drive(base_url, sts_body, seconds=args.seconds, **common)
    finally:
        for r in reversed(runners):
            await r.cleanup()
    print(f"baseline (1 RS256 verify + 1 EdDSA sign): {base_rps:8.0f} req/s")
    print(f"broker AssumeRoleWithWebIdentity:         {broker_rps:8.0f} req/s")
    print(f"ratio: {broker_rps / base_rps:.2f}x (goal >= 0.5x)")


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--max-requests", type=int, default=20_000)
    asyncio.run(main(p.parse_args()))


Runner = Callable[[], Awaitable[None]]

if __name__ == "__main__":
    cli()
