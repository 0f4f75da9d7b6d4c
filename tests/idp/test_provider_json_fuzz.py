"""Provider documents are outside JSON too: whatever a (compromised or broken) provider answers
at discovery, its JWKS or its token endpoint, the relying party raises one of its own errors
(``ProviderUnavailable``, ``ProviderError``, ``InvalidIdToken``), never anything else
(``RecursionError`` from a deeply nested document was one), and a nested document is named.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import pytest

from broker.errors import InvalidIdToken, ProviderError, ProviderUnavailable
from broker.idp import OIDCClient
from tests.idp.conftest import MakeClient
from tests.support.fake_idp import FakeIdP, Override
from tests.support.fuzz import deep_json, fuzz, hostile_json

REDIRECT = "http://127.0.0.1:9/callback/fake"
Use = Callable[[OIDCClient, FakeIdP], Awaitable[object]]


async def _discovery(client: OIDCClient, idp: FakeIdP) -> object:
    return await client.metadata()


async def _jwks(client: OIDCClient, idp: FakeIdP) -> object:
    return await client.verify_id_token(idp.mint(), nonce=None)


async def _token(client: OIDCClient, idp: FakeIdP) -> object:
    return await client.exchange_code(code="c", code_verifier="v", redirect_uri=REDIRECT)


ENDPOINTS: list[tuple[str, Use]] = [
    ("discovery", _discovery),
    ("jwks", _jwks),
    ("token", _token),
]


@pytest.mark.parametrize(("endpoint", "use"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
async def test_a_nested_document_is_named(
    idp: FakeIdP, make_client: MakeClient, endpoint: str, use: Use
) -> None:
    idp.overrides[endpoint] = Override(200, ("[" * 4000 + "]" * 4000).encode())
    with pytest.raises(ProviderUnavailable) as info:
        await use(make_client(idp), idp)
    assert info.value.reason.endswith("_too_deep")


@pytest.mark.parametrize(("endpoint", "use"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
async def test_any_document_gets_a_provider_error(
    idp: FakeIdP, make_client: MakeClient, endpoint: str, use: Use
) -> None:
    async def check(body: str) -> None:
        idp.overrides[endpoint] = Override(200, body.encode())
        with contextlib.suppress(ProviderUnavailable, ProviderError, InvalidIdToken):
            await use(make_client(idp), idp)  # a fresh client: nothing cached

    await fuzz(hostile_json | deep_json, check, max_examples=30)
