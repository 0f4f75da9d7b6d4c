"""OpenID Connect Discovery 1.0 (§3 provider metadata, §4 obtaining it).

``parse_metadata`` turns the JSON document into a ``ProviderMetadata`` and enforces §4.3: the
``issuer`` in the document must be *exactly* the issuer the broker was configured with, or an
attacker who controls the document could make the broker trust tokens from another issuer.

Every other §3 / RFC 8414 §2 rule is authlib's (``OpenIDProviderMetadata``'s validators: https
for the issuer and every endpoint except on loopback, the required ``jwks_uri``,
``response_types_supported`` and ``subject_types_supported``, the shapes of the lists), but for
the few in ``RELAXED``, which real providers break for reasons we accept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from authlib.oidc.discovery import OpenIDProviderMetadata

from broker.errors import ProviderUnavailable
from broker.idp.http import is_http_url

WELL_KNOWN = "/.well-known/openid-configuration"

RELAXED = {
    # Token-only issuers (GitHub Actions, Kubernetes service accounts) have neither endpoint,
    # and authlib assumes the authorization-code grant when grant_types_supported is absent.
    # Checked here instead: http(s) URLs, https when the issuer is.
    "authorization_endpoint",
    "token_endpoint",
    # authlib requires RS256 in the list (§3 says every OP supports it); ES256-only providers
    # exist. The list is intersected with our own allow-list of algorithms instead.
    "id_token_signing_alg_values_supported",
}


def _authlib_checks(doc: Mapping[str, Any]) -> None:
    metadata = OpenIDProviderMetadata(dict(doc))
    for key in metadata.REGISTRY_KEYS:
        if key in RELAXED:
            continue
        try:
            getattr(metadata, f"validate_{key}")()
        except (ValueError, TypeError) as e:
            raise ProviderUnavailable(f"discovery_invalid:{key}") from e


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    jwks_uri: str
    # Absent for token-only issuers (GitHub Actions, Kubernetes service accounts): such a
    # provider verifies presented tokens but cannot run the authorization-code flow.
    authorization_endpoint: str | None
    token_endpoint: str | None
    userinfo_endpoint: str | None
    end_session_endpoint: str | None
    id_token_signing_alg_values_supported: tuple[str, ...]
    token_endpoint_auth_methods_supported: tuple[str, ...]
    code_challenge_methods_supported: tuple[str, ...]
    authorization_response_iss_parameter_supported: bool


def discovery_url(issuer: str) -> str:
    """§4.1: the issuer (any trailing ``/`` removed) followed by ``/.well-known/...``."""
    return issuer.rstrip("/") + WELL_KNOWN


def _str_list(doc: Mapping[str, Any], key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    v = doc.get(key)
    if v is None:
        return default
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ProviderUnavailable(f"discovery_invalid:{key}")
    return tuple(v)


def parse_metadata(doc: Mapping[str, Any], *, expected_issuer: str) -> ProviderMetadata:
    """Validate a discovery document. Raises ``ProviderUnavailable`` with a specific reason."""
    issuer = doc.get("issuer")
    if not isinstance(issuer, str) or issuer != expected_issuer:
        raise ProviderUnavailable("issuer_mismatch")
    _authlib_checks(doc)
    https = issuer.startswith("https://")

    def url(key: str, *, required: bool) -> str | None:
        v = doc.get(key)
        if v is None and not required:
            return None
        if not isinstance(v, str) or not is_http_url(v, require_https=https):
            raise ProviderUnavailable(f"discovery_invalid:{key}")
        return v

    jwks_uri = url("jwks_uri", required=False)
    if jwks_uri is None:
        raise ProviderUnavailable("discovery_invalid:jwks_uri")
    iss_param = doc.get("authorization_response_iss_parameter_supported", False)
    if not isinstance(iss_param, bool):
        raise ProviderUnavailable(
            "discovery_invalid:authorization_response_iss_parameter_supported"
        )
    return ProviderMetadata(
        issuer=issuer,
        jwks_uri=jwks_uri,
        authorization_endpoint=url("authorization_endpoint", required=False),
        token_endpoint=url("token_endpoint", required=False),
        userinfo_endpoint=url("userinfo_endpoint", required=False),
        end_session_endpoint=url("end_session_endpoint", required=False),
        # REQUIRED by Discovery §3; RS256 is what §3 says every provider must support.
        id_token_signing_alg_values_supported=_str_list(
            doc, "id_token_signing_alg_values_supported", ("RS256",)
        ),
        # RFC 8414 §2: when omitted, the default is client_secret_basic.
        token_endpoint_auth_methods_supported=_str_list(
            doc, "token_endpoint_auth_methods_supported", ("client_secret_basic",)
        ),
        code_challenge_methods_supported=_str_list(doc, "code_challenge_methods_supported", ()),
        authorization_response_iss_parameter_supported=iss_param,
    )
