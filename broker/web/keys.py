"""Typed application keys (no string keys, no module-level state)."""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from broker.config import Settings
from broker.service.container import Broker
from broker.web.admission import Admission
from broker.web.render import Renderer
from broker.worker_metrics import SharedCounters

SETTINGS = web.AppKey("settings", Settings)
BROKER = web.AppKey("broker", Broker)
RENDERER = web.AppKey("renderer", Renderer)
METRICS = web.AppKey("metrics", Counter[str])
# only in a worker of ``broker serve --workers N``: where the workers' counters meet
SHARED_COUNTERS = web.AppKey("shared_counters", SharedCounters)
ADMISSION = web.AppKey("admission", Admission)
