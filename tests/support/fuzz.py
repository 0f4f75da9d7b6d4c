"""Hypothesis against a live broker: hostile JSON and tokens, and a way to run ``@given`` checks
that are coroutines on the test's own event loop (where the broker and its store live).

``await fuzz(strategy, check, max_examples=...)`` runs hypothesis in a worker thread; each
example's ``check`` coroutine runs on the caller's loop, which stays free to serve the broker
while the thread waits. Function-scoped fixtures are fine: the ``@given`` function is built
here, not collected by pytest.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

T = TypeVar("T")


async def fuzz(
    strategy: st.SearchStrategy[T],
    check: Callable[[T], Awaitable[None]],
    *,
    max_examples: int,
) -> None:
    loop = asyncio.get_running_loop()

    @settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy)
    def run(value: T) -> None:
        asyncio.run_coroutine_threadsafe(check(value), loop).result()  # type: ignore[arg-type]

    await asyncio.to_thread(run)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


def _deep(depth: int, opener: str, closed: bool) -> str:
    closer = "]" if opener == "[" else "}"
    return opener * depth + ("1" + closer * depth if closed else "")


deep_json = st.builds(
    _deep, st.integers(min_value=1, max_value=6000), st.sampled_from(["[", '{"a":']), st.booleans()
).map(lambda s: s.replace('{"a":}', '{"a":1}'))
"""Nesting from 1 to 6,000 levels, closed or not (``[[[[``)."""

hostile_json = st.one_of(
    _values.map(json.dumps),
    deep_json,
    deep_json.map(lambda d: '{"alg":"RS256","kid":"k","typ":"JWT","x":' + d + "}"),
    st.text(alphabet='[]{}",:\\1aeNI ', max_size=200),
    st.sampled_from(['{"a":1,"a":2}', "[NaN]", '{"x":Infinity}', "1" * 5000, "\ufeff{}", ""]),
)
"""JSON-ish text an attacker might send: valid, nested past any limit, broken, duplicated."""


def _token(header: str, payload: str, signature: bytes) -> str:
    return f"{b64url(header.encode())}.{b64url(payload.encode())}.{b64url(signature)}"


_very_deep = st.builds(
    _deep,
    st.integers(min_value=900, max_value=6000),
    st.sampled_from(["[", '{"a":']),
    st.booleans(),
)

hostile_tokens = st.one_of(
    st.builds(_token, _very_deep, st.just("{}"), st.binary(max_size=64)),
    st.builds(_token, hostile_json, hostile_json, st.binary(max_size=64)),
    st.builds(_token, st.just('{"alg":"RS256","kid":"k"}'), hostile_json, st.binary(max_size=64)),
    st.text(alphabet="abcXYZ019-_.=", min_size=1, max_size=60),
)
"""Compact-JWS-shaped strings whose header and payload are ``hostile_json``."""


def no_credentials(text: str) -> bool:
    words = ("<SecretAccessKey>", '"access_token"', "<SessionToken>")
    return all(word not in text for word in words)


def assert_refused_or_answered(status: int, headers: Any, body: str) -> None:
    """What every fuzzed request must satisfy: no 5xx, no cookie, no credential."""
    assert status < 500, (status, body[:300])
    assert "Set-Cookie" not in headers, headers
    assert no_credentials(body), body[:300]
