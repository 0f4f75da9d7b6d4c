"""Process-wide tuning for a server process (``broker serve``).

The broker keeps large, long-lived, acyclic caches on its hot paths (verified tokens, compiled
policies, assertions). With CPython's default thresholds, the cyclic garbage collector runs a
young-generation pass every 700 allocations and regularly rescans those caches in full passes,
which costs forward-auth more than its own logic. Refcounting still frees every acyclic object
at once; the collector is only needed for cycles, which the hot paths do not create, so it can
run far less often. ``freeze`` moves everything alive after start-up (modules, config, keys)
out of the collector's sight for good.
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (50_000, 20, 100)


def tune_for_serving() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
