"""OpenID Connect identity providers as IAM entities: registered through the IAM API
(``CreateOpenIDConnectProvider`` and friends), kept in the store, and trusted by
``AssumeRoleWithWebIdentity`` on every instance (``RegisteredProviders``).

**Naming.** A registered provider is named as AWS names it: its URL's host (lower case, with the
port if one is given) and path, without the scheme and a trailing ``/``. So
``https://token.actions.githubusercontent.com`` is ``token.actions.githubusercontent.com``: its
ARN is ``arn:broker:iam::<account>:oidc-provider/token.actions.githubusercontent.com``, trust
policies name it ``{"Federated": "<that ARN>"}`` (or the bare name), and its claims are the
condition keys ``token.actions.githubusercontent.com:sub``, ``...:aud`` (DESIGN C2's
``<provider name>:<claim>``). Providers declared in the config file keep their table name; they
are listed too, read-only (``UnmodifiableEntity``).

**URLs.** ``https://`` only, as AWS; ``http://`` is accepted for loopback hosts (``localhost``,
``127.0.0.0/8``, ``::1``) so that a provider on the same host (tests, development) can be
registered. No user info, query or fragment. A URL whose name would be a reserved condition-key
namespace (``aws``, ``broker``, ``sts``, ``iam``, ``http``: ``config.RESERVED_PROVIDER_NAMES``)
is refused, as is one whose name or issuer is a config provider's (``EntityAlreadyExists``).

**Verification.** ID tokens are verified with the provider's JWKS, found through its discovery
document (``<url>/.well-known/openid-configuration``) over TLS, exactly as for config
providers (``broker.idp.OIDCClient``); the token's ``aud`` must be one of the provider's client
IDs. Thumbprints are accepted and stored (AWS's API has them) but not used: the broker trusts the
TLS certificate chain, not a pinned certificate.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from broker.clock import Clock
from broker.config import ProviderConfig, Settings, reserved_provider_reason
from broker.errors import (
    AlreadyExists,
    IamInvalidInput,
    IamLimitExceeded,
    NotFound,
    ReadOnlyFromConfig,
    RecordNotFound,
)
from broker.idp import OIDCClient
from broker.idp.client import accepted_issuers
from broker.service.audit import Auditor, RequestInfo
from broker.storage.base import OidcProviderRecord, Store

log = logging.getLogger(__name__)

MAX_PROVIDERS = 100  # AWS's default quota of OIDC providers per account
MAX_CLIENT_IDS = 100  # AWS: up to 100 client IDs (audiences) per provider
MAX_THUMBPRINTS = 5  # AWS: up to 5 thumbprints per provider
MAX_TAGS = 50  # IAM: 50 tags per resource
REFRESH_ON_MISS_COOLDOWN = 1.0

_ARN = re.compile(r"arn:(broker|aws):iam::(\d{12}):oidc-provider/(.+)")
# what a name may hold: host (IPv6 in brackets), port, path; nothing that IAM policies treat
# specially (wildcards ``*``/``?``, policy variables ``${...}``), no spaces or quotes
_NAME = re.compile(r"[a-z0-9.\-\[\]:]+(/[A-Za-z0-9._~%!&'()+,;=:@-]+)*")
_HEX40 = re.compile(r"[0-9A-Fa-f]{40}")


def _invalid(reason: str, message: str) -> IamInvalidInput:
    return IamInvalidInput(reason, public_message=message)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def provider_name(url: str) -> str:
    """The name of the provider at ``url`` (host[:port]/path, no scheme, no trailing ``/``).
    Raises ``IamInvalidInput`` for a URL the broker does not accept (see the module)."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise _invalid("oidc_url_chars", "The URL must not contain spaces or control characters.")
    try:
        u = urlsplit(url)
        u.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        raise _invalid("oidc_url_malformed", f"{url[:255]} is not a valid URL.") from None
    scheme = u.scheme.lower()
    host = (u.hostname or "").lower()
    if scheme not in ("https", "http") or not host:
        raise _invalid("oidc_url_scheme", "The URL must begin with https://.")
    if scheme == "http" and not is_loopback(host):
        raise _invalid(
            "oidc_url_not_https",
            "The URL must begin with https:// (http:// is accepted for loopback hosts only).",
        )
    if u.username is not None or u.password is not None or "?" in url or "#" in url:
        raise _invalid(
            "oidc_url_parts", "The URL must not contain user information, a query or a fragment."
        )
    netloc = u.netloc.lower()
    name = netloc + u.path.rstrip("/")
    if not _NAME.fullmatch(name):
        raise _invalid("oidc_url_chars", f"{url[:255]} is not a valid provider URL.")
    reserved = reserved_provider_reason(name)
    if reserved is not None:
        raise _invalid(
            "oidc_url_reserved_name",
            f"The provider name {name} is reserved ({reserved}): its claims would become "
            f"{name}:<claim> condition keys.",
        )
    return name


def name_from_arn(arn: str, account_id: str) -> str:
    """The provider name of ``arn:broker:iam::<account>:oidc-provider/<name>`` (``arn:aws:``
    accepted); ``IamInvalidInput`` if malformed, ``NotFound`` if of another account."""
    m = _ARN.fullmatch(arn)
    if m is None:
        raise _invalid("oidc_arn_malformed", f"ARN {arn[:300]} is not valid.")
    if m.group(2) != account_id:
        raise NotFound(
            "oidc_provider_of_another_account",
            public_message=f"OpenIDConnect Provider not found for arn {arn[:300]}",
        )
    return m.group(3)


@dataclass(frozen=True)
class ProviderView:
    """An OIDC provider as the IAM API shows it: registered (``source`` "api") or declared in
    the config file (``source`` "config", read-only)."""

    name: str
    url: str
    client_ids: tuple[str, ...]
    thumbprints: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()
    created_at: float | None = None
    source: str = "api"


def _view(r: OidcProviderRecord) -> ProviderView:
    return ProviderView(r.name, r.url, r.client_ids, r.thumbprints, r.tags, r.created_at, "api")


def _unique(items: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def _check_thumbprints(thumbprints: Sequence[str]) -> tuple[str, ...]:
    prints = _unique([t.lower() for t in thumbprints])
    if len(prints) > MAX_THUMBPRINTS:
        raise _invalid(
            "oidc_too_many_thumbprints",
            f"A provider has at most {MAX_THUMBPRINTS} thumbprints.",
        )
    for t in prints:
        if not _HEX40.fullmatch(t):
            raise _invalid("oidc_thumbprint", "A thumbprint is 40 hexadecimal characters.")
    return prints


def _check_client_ids(client_ids: Sequence[str]) -> tuple[str, ...]:
    ids = _unique(client_ids)
    if len(ids) > MAX_CLIENT_IDS:
        raise IamLimitExceeded(
            "oidc_too_many_client_ids",
            public_message=f"Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: "
            f"{MAX_CLIENT_IDS}",
        )
    return ids


def _check_tag_keys(tags: Sequence[tuple[str, str]]) -> None:
    keys = [k.lower() for k, _ in tags]
    if len(set(keys)) != len(keys):
        raise _invalid("duplicate_tag_keys", "Duplicate tag keys found.")


class OidcProviderService:
    """The IAM entity: create, read, change and delete registered providers (audited,
    fail-closed: the success row is written before the change)."""

    def __init__(self, settings: Settings, store: Store, auditor: Auditor, clock: Clock) -> None:
        self._settings = settings
        self._store = store
        self._audit = auditor
        self._clock = clock

    # --- config providers (read-only) ------------------------------------------------------

    def config_providers(self) -> dict[str, ProviderView]:
        return {
            name: ProviderView(
                name=name,
                url=p.issuer,
                client_ids=tuple(p.audiences),
                source="config",
            )
            for name, p in self._settings.providers.items()
            if p.type != "local"
        }

    def _config_clash(self, name: str, url: str) -> str | None:
        """The config provider a registration would clash with, or None."""
        for cname, p in self._settings.providers.items():
            if cname == name:
                return cname
            if p.type == "local":
                continue
            if url in accepted_issuers(p):
                return cname
            try:
                if provider_name(p.issuer) == name:
                    return cname
            except IamInvalidInput:
                continue
        return None

    # --- reads -----------------------------------------------------------------------------

    async def get(self, name: str) -> ProviderView:
        config = self.config_providers().get(name)
        if config is not None:
            return config
        record = await self._store.get_oidc_provider(name)
        if record is None:
            raise NotFound(
                f"no_such_oidc_provider:{name[:200]}",
                public_message=f"OpenIDConnect Provider not found for name {name[:200]}",
            )
        return _view(record)

    async def list(self) -> list[ProviderView]:
        views = list(self.config_providers().values())
        views += [_view(r) for r in await self._store.list_oidc_providers()]
        return sorted(views, key=lambda v: v.name)

    # --- changes ---------------------------------------------------------------------------

    async def create(
        self,
        url: str,
        *,
        client_ids: Sequence[str] = (),
        thumbprints: Sequence[str] = (),
        tags: Sequence[tuple[str, str]] = (),
        actor: str,
        req: RequestInfo,
    ) -> OidcProviderRecord:
        name = provider_name(url)
        ids = _check_client_ids(client_ids)
        prints = _check_thumbprints(thumbprints)
        _check_tag_keys(tags)
        clash = self._config_clash(name, url)
        if clash is not None:
            raise AlreadyExists(
                f"oidc_provider_in_config:{clash}",
                public_message=f"Provider with url {url[:255]} already exists (declared in "
                f"the configuration as {clash}).",
            )
        registered = await self._store.list_oidc_providers()
        if any(r.name == name for r in registered):  # (a racing create: the store's key)
            raise AlreadyExists(
                f"oidc_provider_exists:{name[:200]}",
                public_message=f"Provider with url {url[:255]} already exists.",
            )
        if len(registered) >= MAX_PROVIDERS:
            raise IamLimitExceeded(
                "oidc_provider_quota",
                public_message=f"Cannot exceed quota for OpenIdConnectProvidersPerAccount: "
                f"{MAX_PROVIDERS}",
            )
        now = self._clock.now()
        record = OidcProviderRecord(
            name=name,
            url=url,
            client_ids=ids,
            thumbprints=prints,
            tags=tuple(tags),
            created_at=now,
            updated_at=now,
        )
        await self._audit.record_or_fail(
            "iam.CreateOpenIDConnectProvider",
            "success",
            req=req,
            principal=actor,
            details={"provider": name, "url": url, "client_ids": list(ids)},
        )
        try:
            await self._store.create_oidc_provider(record)
        except AlreadyExists:
            raise AlreadyExists(
                f"oidc_provider_exists:{name[:200]}",
                public_message=f"Provider with url {url[:255]} already exists.",
            ) from None
        return record

    def _writable(self, name: str) -> None:
        if name in self.config_providers():
            raise ReadOnlyFromConfig(
                f"oidc_provider_from_config:{name}",
                public_message=f"The provider {name} is declared in the configuration file "
                "and cannot be changed through the API.",
            )

    async def delete(self, name: str, *, actor: str, req: RequestInfo) -> None:
        self._writable(name)
        await self.get(name)  # NoSuchEntity before the audit row
        await self._audit.record_or_fail(
            "iam.DeleteOpenIDConnectProvider",
            "success",
            req=req,
            principal=actor,
            details={"provider": name},
        )
        try:
            await self._store.delete_oidc_provider(name)
        except RecordNotFound:
            raise self._missing(name) from None

    async def _update(
        self,
        action: str,
        name: str,
        change: Callable[[OidcProviderRecord], OidcProviderRecord],
        *,
        details: Mapping[str, Any],
        actor: str,
        req: RequestInfo,
    ) -> OidcProviderRecord:
        self._writable(name)
        current = await self.get(name)
        record = OidcProviderRecord(
            name=current.name,
            url=current.url,
            client_ids=current.client_ids,
            thumbprints=current.thumbprints,
            tags=current.tags,
        )
        change(record)  # refuse (limits) before the audit row; the store re-applies it
        await self._audit.record_or_fail(
            f"iam.{action}",
            "success",
            req=req,
            principal=actor,
            details={"provider": name, **details},
        )
        try:
            return await self._store.update_oidc_provider(name, change)
        except RecordNotFound:
            raise self._missing(name) from None

    @staticmethod
    def _missing(name: str) -> NotFound:
        return NotFound(
            f"no_such_oidc_provider:{name[:200]}",
            public_message=f"OpenIDConnect Provider not found for name {name[:200]}",
        )

    async def add_client_id(
        self, name: str, client_id: str, *, actor: str, req: RequestInfo
    ) -> OidcProviderRecord:
        now = self._clock.now()

        def change(p: OidcProviderRecord) -> OidcProviderRecord:
            ids = _check_client_ids([*p.client_ids, client_id])
            return replace(p, client_ids=ids, updated_at=now)

        return await self._update(
            "AddClientIDToOpenIDConnectProvider",
            name,
            change,
            details={"client_id": client_id},
            actor=actor,
            req=req,
        )

    async def remove_client_id(
        self, name: str, client_id: str, *, actor: str, req: RequestInfo
    ) -> OidcProviderRecord:
        now = self._clock.now()

        def change(p: OidcProviderRecord) -> OidcProviderRecord:
            ids = tuple(c for c in p.client_ids if c != client_id)
            return replace(p, client_ids=ids, updated_at=now)

        return await self._update(
            "RemoveClientIDFromOpenIDConnectProvider",
            name,
            change,
            details={"client_id": client_id},
            actor=actor,
            req=req,
        )

    async def tag(
        self, name: str, tags: Sequence[tuple[str, str]], *, actor: str, req: RequestInfo
    ) -> OidcProviderRecord:
        """Add or overwrite tags (keys compare case-insensitively, as IAM's); at most
        ``MAX_TAGS``, else ``LimitExceeded`` and nothing changes."""
        _check_tag_keys(tags)
        now = self._clock.now()

        def change(p: OidcProviderRecord) -> OidcProviderRecord:
            new = {k.lower(): (k, v) for k, v in tags}
            kept = [(k, v) for k, v in p.tags if k.lower() not in new]
            merged = (*kept, *new.values())
            if len(merged) > MAX_TAGS:
                raise IamLimitExceeded(
                    f"tag_limit:{MAX_TAGS}",
                    public_message=f"The number of tags has reached the maximum limit of "
                    f"{MAX_TAGS}.",
                )
            return replace(p, tags=merged, updated_at=now)

        return await self._update(
            "TagOpenIDConnectProvider",
            name,
            change,
            details={"keys": [k for k, _ in tags]},
            actor=actor,
            req=req,
        )

    async def untag(
        self, name: str, keys: Sequence[str], *, actor: str, req: RequestInfo
    ) -> OidcProviderRecord:
        gone = {k.lower() for k in keys}
        now = self._clock.now()

        def change(p: OidcProviderRecord) -> OidcProviderRecord:
            kept = tuple((k, v) for k, v in p.tags if k.lower() not in gone)
            return replace(p, tags=kept, updated_at=now)

        return await self._update(
            "UntagOpenIDConnectProvider",
            name,
            change,
            details={"keys": list(keys)},
            actor=actor,
            req=req,
        )

    async def update_thumbprints(
        self, name: str, thumbprints: Sequence[str], *, actor: str, req: RequestInfo
    ) -> OidcProviderRecord:
        prints = _check_thumbprints(thumbprints)
        now = self._clock.now()

        def change(p: OidcProviderRecord) -> OidcProviderRecord:
            return replace(p, thumbprints=prints, updated_at=now)

        return await self._update(
            "UpdateOpenIDConnectProviderThumbprint",
            name,
            change,
            details={"thumbprints": len(prints)},
            actor=actor,
            req=req,
        )


# --- trusted by STS --------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustedProvider:
    """A registered provider as ``AssumeRoleWithWebIdentity`` uses it."""

    config: ProviderConfig
    client: OIDCClient
    audiences: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.config.name


ClientFactory = Callable[[ProviderConfig], OIDCClient]


class RegisteredProviders:
    """The registered providers by issuer, with one ``OIDCClient`` each (kept while the
    provider's URL stays, so its discovery and JWKS caches survive client-ID changes).

    ``refresh`` re-reads the store: it runs after every IAM change on this instance and at the
    IAM generation poll on the others (within a second), so a deleted provider's tokens are
    refused at once here and within 2 s elsewhere. An unknown issuer triggers a refresh too (at
    most once a second), so a provider registered on another instance is trusted at once."""

    def __init__(
        self, settings: Settings, store: Store, make_client: ClientFactory, clock: Clock
    ) -> None:
        self._store = store
        self._make_client = make_client
        self._clock = clock
        self._config_issuers = {
            iss
            for p in settings.providers.values()
            if p.type != "local"
            for iss in accepted_issuers(p)
        }
        self._config_names = set(settings.providers)
        self._by_issuer: dict[str, TrustedProvider] = {}
        self._last_refresh = float("-inf")

    async def refresh(self) -> None:
        self._last_refresh = self._clock.now()
        records = await self._store.list_oidc_providers()
        old = {t.config.name: t for t in self._by_issuer.values()}
        fresh: dict[str, TrustedProvider] = {}
        for r in records:
            if r.url in self._config_issuers or r.name in self._config_names:
                continue  # the config file's provider wins (it was declared after)
            audiences = tuple(r.client_ids)
            known = old.get(r.name)
            if known is not None and known.config.issuer == r.url:
                client = known.client
            else:
                client = self._make_client(
                    ProviderConfig(
                        name=r.name,
                        type="oidc",
                        issuer=r.url,
                        client_id=audiences[0] if audiences else "",
                        scopes=("openid",),
                        audiences=audiences,
                        display_name=r.name,
                    )
                )
            config = replace(client.config, audiences=audiences)
            fresh[r.url] = TrustedProvider(config, client, audiences)
        self._by_issuer = fresh

    async def find(self, issuer: str) -> TrustedProvider | None:
        hit = self._by_issuer.get(issuer)
        if hit is None and self._clock.now() - self._last_refresh >= REFRESH_ON_MISS_COOLDOWN:
            await self.refresh()
            hit = self._by_issuer.get(issuer)
        return hit
