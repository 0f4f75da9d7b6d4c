"""``tokens.issue_time``: the millisecond ``iat`` of the tokens the broker issues, never after the
instant it stands for (a credential issued before a revocation must compare as before it)."""

from __future__ import annotations

import json
import math
import random

import pytest

from broker.domain.tokens import issue_time

T0 = 1_800_000_000.0


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (T0, T0),
        (T0 + 0.2, T0 + 0.2),
        (T0 + 0.2004, T0 + 0.2),
        (T0 + 0.2996, T0 + 0.299),  # down, not to nearest: never past the moment of issue
        (T0 + 0.9999, T0 + 0.999),
        # one below a millisecond: ``now * 1000`` rounds up onto the next one
        (math.nextafter(1800780148.653, 0), 1800780148.652),
        (1_700_000_000, 1_700_000_000.0),
    ],
    ids=["whole", "exact-ms", "sub-ms", "not-to-nearest", "end-of-second", "float-edge", "int"],
)
def test_issue_time_is_the_millisecond_at_or_before_now(now: float, expected: float) -> None:
    assert issue_time(now) == expected
    assert issue_time(now) <= now


def test_issue_time_over_many_instants() -> None:
    rng = random.Random(7)
    for i in range(20_000):
        now = T0 + rng.random() * 1e7
        if i % 2:  # the float edge: just under a whole millisecond
            now = math.nextafter(round(now, 3), 0)
        t = issue_time(now)
        assert t <= now
        assert now - t < 0.001
        text = json.dumps(t)  # what goes into the token: at most three decimals, read back exact
        assert len(text.partition(".")[2]) <= 3, text
        assert json.loads(text) == t
