"""Operator endpoints: liveness, readiness, Prometheus metrics.

They are never refused for overload (``observed(admit=False)``): an orchestrator that sees an
overloaded instance fail its liveness or readiness check restarts it or takes it out of the
pool, and the load it was carrying lands on the others, which then overload in turn. An
overloaded broker sheds its own excess; operators still read ``/metrics`` to see it do so."""

from __future__ import annotations

import logging
from collections import Counter

from aiohttp import web

from broker.errors import StoreError
from broker.web.admission import REFUSED
from broker.web.keys import ADMISSION, BROKER, METRICS, SHARED_COUNTERS
from broker.web.middleware import forward_auth_metric

log = logging.getLogger(__name__)


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """Ready when the store answers, a signing key is loaded and revocations are current. The
    answer names what fails, never how (the store's error text stays in the log)."""
    b = request.app[BROKER]
    checks: dict[str, str] = {}
    try:
        await b.store.ping()
        checks["store"] = "ok"
    except StoreError as e:
        log.warning("readiness: the store does not answer: %s", e.reason)
        checks["store"] = "failing: store unavailable"
    checks["keys"] = "ok" if b.keyring.jwks().get("keys") else "failing: no signing key"
    checks["revocations"] = "ok" if b.revocations.healthy else "failing: revocation state stale"
    ok = all(v == "ok" for v in checks.values())
    return web.json_response(
        {"status": "ready" if ok else "not ready", "checks": checks}, status=200 if ok else 503
    )


def own_counts(app: web.Application) -> Counter[str]:
    """This process's counters: requests by surface and status, refusals under overload."""
    counts: Counter[str] = app[METRICS].copy()
    counts.update(app[ADMISSION].refusals())
    # /auth answers served from the verdict cache are counted by forward-auth itself.
    counts[forward_auth_metric(200)] += app[BROKER].forward_auth.cached_allows
    return counts


async def metrics(request: web.Request) -> web.StreamResponse:
    """Prometheus text. Under ``broker serve --workers N`` the counters are every worker's
    (``broker.worker_metrics``), and ``broker_worker_info`` names the worker that answered."""
    counts = own_counts(request.app)
    shared = request.app.get(SHARED_COUNTERS)
    if shared is not None:
        counts = shared.total(counts)
    refused = {k: v for k, v in counts.items() if k.startswith(REFUSED)}
    lines = ["# TYPE broker_http_requests_total counter"]
    lines += [f"{k} {v}" for k, v in sorted(counts.items()) if v and k not in refused]
    lines += [f"# TYPE {REFUSED} counter"] + [f"{k} {v}" for k, v in sorted(refused.items())]
    lines += request.app[ADMISSION].gauges()
    if shared is not None:
        lines += ["# TYPE broker_worker_info gauge", f'broker_worker_info{{pid="{shared.pid}"}} 1']
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")
