"""The OpenID Connect relying party for one configured provider.

``OIDCClient`` runs the authorization-code flow with PKCE (OIDC Core §3.1, RFC 7636), checks the
authorization response (RFC 6749 §4.1.2, RFC 9207 ``iss``), redeems the code (RFC 6749 §4.1.3,
§2.3.1 client authentication) and verifies ID tokens (``id_token``; OIDC Core §3.1.3.7). The
pipeline in ``verify_id_token`` is authlib's ``parse_id_token``: pin ``iss`` from configuration,
take algorithms from metadata, refetch the JWKS once on an unknown key, then always validate
claims. Logout tokens (Back-Channel Logout 1.0, ``verify_logout_token``) share the signature
steps and have their own claims (``logout_token``).

Discovery is cached for ``discovery_ttl`` and fetched by one request however many callers need
it; nothing here is shared between providers, so a slow provider delays only its own callers.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
from yarl import URL

from broker.clock import Clock
from broker.config import ProviderConfig
from broker.errors import InvalidIdToken, LoginError, ProviderError, ProviderUnavailable
from broker.idp.cache import Refreshing
from broker.idp.http import get_json_object, request
from broker.idp.id_token import (
    ALLOWED_TYP,
    ClaimRules,
    IdToken,
    UnverifiedJws,
    check_claims,
    check_header,
    parse_jws,
)
from broker.idp.jwks import ASYMMETRIC_ALGS, JwksCache
from broker.idp.logout_token import LOGOUT_TYP, LogoutToken, check_logout_claims
from broker.idp.metadata import ProviderMetadata, discovery_url, parse_metadata

log = logging.getLogger(__name__)

GOOGLE_ISSUER = "https://accounts.google.com"
GOOGLE_ISSUER_ALIAS = "accounts.google.com"  # Google also emits iss without the scheme
_RESERVED_AUTH_PARAMS = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    }
)
_ERROR_CODE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")  # every registered code fits
# error_description shown to people: RFC 6749's charset, minus what could matter in HTML.
_UNSAFE_TEXT = re.compile(r"[^\x20-\x21\x23-\x25\x28-\x3b\x3d\x3f-\x5b\x5d-\x5f\x61-\x7e]")


def _error_code(value: Any) -> str:
    """A provider's ``error`` value, safe for reasons and logs (else ``"invalid"``)."""
    if isinstance(value, str) and _ERROR_CODE.fullmatch(value):
        return value
    return "invalid"


def _sanitize(text: Any, limit: int = 200) -> str:
    """A provider's ``error_description``: printable ASCII without ``"&'<>\\`` and backquote,
    shortened."""
    if not isinstance(text, str):
        return ""
    return _UNSAFE_TEXT.sub("", text)[:limit].strip()


def accepted_issuers(config: ProviderConfig) -> tuple[str, ...]:
    """The ``iss`` values accepted in ID tokens: the configured issuer, exactly; for the
    ``google`` type also Google's scheme-less alias (and only there)."""
    if config.type == "google" and config.issuer == GOOGLE_ISSUER:
        return (config.issuer, GOOGLE_ISSUER_ALIAS)
    return (config.issuer,)


@dataclass(frozen=True)
class TokenSet:
    """A token endpoint's successful answer (RFC 6749 §5.1, OIDC Core §3.1.3.3)."""

    id_token: str = field(repr=False)
    access_token: str | None = field(repr=False)
    token_type: str | None
    refresh_token: str | None = field(repr=False)
    expires_in: float | None
    scope: tuple[str, ...]


class OIDCClient:
    """One provider, as a relying party. Create one per provider and reuse it."""

    def __init__(
        self, config: ProviderConfig, http: aiohttp.ClientSession, *, clock: Clock
    ) -> None:
        if config.type == "local":
            raise ValueError(f"provider {config.name!r} is local, not OpenID Connect")
        self.config = config
        self._http = http
        self._clock = clock
        self._metadata = Refreshing(
            self._fetch_metadata,
            clock=clock,
            ttl=config.discovery_ttl,
            cooldown=config.jwks_refetch_cooldown,
            name=f"{config.name} discovery",
        )
        self._jwks: JwksCache | None = None
        self._issuers = accepted_issuers(config)

    @property
    def name(self) -> str:
        return self.config.name

    # --- discovery -------------------------------------------------------------------------

    async def _fetch_metadata(self) -> ProviderMetadata:
        url = discovery_url(self.config.issuer)
        doc = await get_json_object(
            self._http, url, what="discovery", time_limit=self.config.timeout
        )
        md = parse_metadata(doc, expected_issuer=self.config.issuer)
        log.info("provider %s: discovery fetched from %s", self.name, url)
        return md

    async def metadata(self) -> ProviderMetadata:
        """The provider's metadata (OIDC Discovery §4), cached for ``discovery_ttl``.

        Raises ``ProviderUnavailable`` (``issuer_mismatch``, ``discovery_timeout``, ...).
        """
        return await self._metadata.get()

    def _jwks_for(self, md: ProviderMetadata) -> JwksCache:
        if self._jwks is None or self._jwks.uri != md.jwks_uri:
            self._jwks = JwksCache(
                md.jwks_uri,
                self._http,
                clock=self._clock,
                timeout=self.config.timeout,
                ttl=self.config.discovery_ttl,
                cooldown=self.config.jwks_refetch_cooldown,
                name=self.name,
            )
        return self._jwks

    # --- authorization request and response --------------------------------------------------

    async def authorization_url(
        self,
        *,
        redirect_uri: str,
        state: str,
        nonce: str,
        code_challenge: str,
        extra: Mapping[str, str] | None = None,
    ) -> str:
        """The URL to send the browser to (OIDC Core §3.1.2.1, RFC 7636 §4.3)."""
        md = await self.metadata()
        if md.authorization_endpoint is None:
            raise ProviderUnavailable("no_authorization_endpoint")
        extra = dict(extra or {})
        clash = _RESERVED_AUTH_PARAMS.intersection(extra)
        if clash:
            raise ValueError(f"extra parameters may not override {sorted(clash)}")
        params = {
            "response_type": "code",
            "client_id": self.config.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.config.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
            **extra,
        }
        # RFC 6749 §3.1: a query already in the endpoint URL is kept.
        return str(URL(md.authorization_endpoint).extend_query(params))

    async def check_authorization_response(self, params: Mapping[str, str]) -> str:
        """Judge the redirect back from the provider; returns the authorization code.

        Checks, in order: RFC 9207 ``iss`` (exactly the issuer; required when the provider
        advertises ``authorization_response_iss_parameter_supported``) -> ``LoginError``
        ``iss_param_mismatch`` / ``iss_param_missing``; an ``error`` (RFC 6749 §4.1.2.1) ->
        ``ProviderError("provider_error:<error>")``; the ``code`` -> ``LoginError("missing_code")``.
        The ``state`` is the caller's to check.
        """
        md = await self.metadata()
        iss = params.get("iss")
        if iss is not None:
            if iss != md.issuer:
                raise LoginError("iss_param_mismatch")
        elif md.authorization_response_iss_parameter_supported:
            raise LoginError("iss_param_missing")
        if "error" in params:
            error = _error_code(params.get("error"))
            description = _sanitize(params.get("error_description"))
            message = f"The identity provider did not sign you in ({error})."
            if description:
                message = f"The identity provider did not sign you in ({error}: {description})."
            raise ProviderError(f"provider_error:{error}", public_message=message)
        code = params.get("code")
        if not code:
            raise LoginError("missing_code")
        return code

    # --- token endpoint ----------------------------------------------------------------------

    def _client_auth(self, md: ProviderMetadata, form: dict[str, str]) -> dict[str, str]:
        """RFC 6749 §2.3.1: HTTP Basic (id and secret form-encoded first) unless only POST is
        offered; a client without a secret is a public client and sends its ``client_id``.
        Returns the headers to add; may add to ``form``."""
        secret = self.config.client_secret
        if secret is None:
            form["client_id"] = self.config.client_id
            return {}
        methods = md.token_endpoint_auth_methods_supported
        if "client_secret_basic" not in methods and "client_secret_post" in methods:
            form["client_id"] = self.config.client_id
            form["client_secret"] = secret.get()
            return {}
        pair = f"{quote(self.config.client_id, safe='')}:{quote(secret.get(), safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}

    async def exchange_code(self, *, code: str, code_verifier: str, redirect_uri: str) -> TokenSet:
        """Redeem the authorization code (RFC 6749 §4.1.3, RFC 7636 §4.5).

        Raises ``ProviderError("token_endpoint:<error>")`` when the provider refuses with an
        error document, ``ProviderUnavailable`` on timeouts, network errors, 5xx and nonsense.
        The ID token in the answer is NOT verified here: call ``verify_id_token``.
        """
        md = await self.metadata()
        if md.token_endpoint is None:
            raise ProviderUnavailable("no_token_endpoint")
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        }
        headers = self._client_auth(md, form)
        resp = await request(
            self._http,
            "POST",
            md.token_endpoint,
            what="token_endpoint",
            time_limit=self.config.timeout,
            data=form,
            headers=headers,
        )
        if resp.status >= 500 or resp.status in (301, 302, 303, 307, 308):
            raise ProviderUnavailable(f"token_endpoint_status:{resp.status}")
        doc = resp.json("token_endpoint")
        if not isinstance(doc, dict):
            raise ProviderUnavailable("token_endpoint_not_object")
        if resp.status != 200 or "error" in doc:
            error = _error_code(doc.get("error"))
            log.info(
                "provider %s: token endpoint refused (%s): %s",
                self.name,
                error,
                _sanitize(doc.get("error_description")),
            )
            raise ProviderError(f"token_endpoint:{error}")
        return _token_set(doc)

    # --- ID tokens ---------------------------------------------------------------------------

    async def verify_id_token(
        self,
        token: str,
        *,
        nonce: str | None,
        audiences: Sequence[str] | None = None,
        max_age: float | None = None,
        access_token: str | None = None,
        code: str | None = None,
    ) -> IdToken:
        """Verify an ID token (OIDC Core §3.1.3.7); raises ``InvalidIdToken(reason)``.

        ``nonce``: the value sent in the authorization request (None: not checked, for tokens
        presented directly). ``audiences``: None for a login (``aud`` must hold our client_id
        and ``azp`` must be it when set or when there are several audiences); otherwise the
        accepted audiences of a directly presented token. ``max_age``: the oldest ``iat``
        accepted, in seconds. ``access_token``: the one from the same token response, which
        an ``at_hash`` claim must match; ``code``: the authorization code redeemed for it, which
        a ``c_hash`` claim, when present, must match. May also raise ``ProviderUnavailable``
        (discovery or JWKS down).
        """
        jws = await self._verified_jws(token, ALLOWED_TYP)
        rules = ClaimRules(
            issuers=self._issuers,
            client_id=self.config.client_id,
            audiences=tuple(audiences) if audiences is not None else None,
            nonce=nonce,
            max_age=max_age,
            leeway=self.config.leeway,
            now=self._clock.now(),
        )
        return check_claims(jws, token, rules, access_token=access_token, code=code)

    async def verify_logout_token(self, token: str) -> LogoutToken:
        """Verify a logout token (Back-Channel Logout 1.0 §2.6): signature as for ID tokens,
        then its claims (``logout_token.check_logout_claims``). Raises ``InvalidIdToken(reason)``
        or ``ProviderUnavailable``. The ``jti``'s single use is the caller's to enforce."""
        jws = await self._verified_jws(token, LOGOUT_TYP)
        return check_logout_claims(
            jws,
            issuers=self._issuers,
            client_id=self.config.client_id,
            leeway=self.config.leeway,
            now=self._clock.now(),
        )

    async def _verified_jws(self, token: str, typs: Sequence[str]) -> UnverifiedJws:
        """OIDC Core §3.1.3.7 steps 6-8 for any JWT the provider signs with its ID-token keys:
        strict parsing, the header judged, the signature checked with the JWKS."""
        jws = parse_jws(token)
        md = await self.metadata()
        advertised = set(md.id_token_signing_alg_values_supported)
        allowed = [a for a in ASYMMETRIC_ALGS if a in advertised]
        alg, kid = check_header(jws.header, allowed, typs)
        keys = await self._jwks_for(md).keys_for(kid, alg)
        if not any(k.verify(alg, jws.signing_input, jws.signature) for k in keys):
            raise InvalidIdToken("bad_signature")
        return jws


def _token_set(doc: Mapping[str, Any]) -> TokenSet:
    id_token = doc.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise ProviderUnavailable("token_endpoint_missing_id_token")

    def opt_str(key: str) -> str | None:
        v = doc.get(key)
        return v if isinstance(v, str) else None

    expires_in = doc.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        expires_in = None
    scope = opt_str("scope")
    return TokenSet(
        id_token=id_token,
        access_token=opt_str("access_token"),
        token_type=opt_str("token_type"),
        refresh_token=opt_str("refresh_token"),
        expires_in=float(expires_in) if expires_in is not None else None,
        scope=tuple(scope.split()) if scope else (),
    )
