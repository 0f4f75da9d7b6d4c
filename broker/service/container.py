"""The broker's services wired together, opened and closed as one unit.

``Broker.open`` migrates the store, loads the key ring, reconciles config roles, bootstraps the
first admin, and primes the revocation state; ``Broker.run_periodic`` polls revocations every
second in a loop of its own (slow periodic work must not let the state go stale) and runs
``Broker.tick``, the rest of the periodic work (batched last-seen, access-activity and audit
writes, key rotation, purges).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from broker.clock import Clock, SystemClock
from broker.config import Settings
from broker.domain.sts import USER_SESSION_MAX
from broker.errors import AuditUnavailable, BrokerError, ConfigError, StoreError
from broker.idp import OIDCClient
from broker.kek import decode_kek, load_or_create_kek_file
from broker.keyring import PUBLISH_AHEAD, KeyRing
from broker.service.access_keys import AccessKeyService
from broker.service.activity import ActivityLog
from broker.service.audit import Auditor
from broker.service.audit_chain import CHECKPOINT_SECONDS, AuditChain
from broker.service.authorize import Authorizer
from broker.service.backchannel import BackchannelLogout
from broker.service.bootstrap import bootstrap_admin
from broker.service.cli_sessions import CliSessions
from broker.service.credentials import CredentialVerifier
from broker.service.forward_auth import ForwardAuth, HeaderFreezer
from broker.service.hashing import PasswordHashing
from broker.service.iam import IamService
from broker.service.iam_api import IamApi, all_actions
from broker.service.login import LoginService
from broker.service.mfa import MfaService
from broker.service.mfa_enrol import ENROL_LIFETIME, ENROL_PATH
from broker.service.offboarding import OffboardingService
from broker.service.providers import OidcProviderService, RegisteredProviders
from broker.service.revocation import RevocationState
from broker.service.roles import RoleCatalog, policy_problems, trust_policy_warnings
from broker.service.sessions import SessionService
from broker.service.sts import StsService
from broker.storage import migrate, open_store
from broker.storage.base import SigningKey, Store

log = logging.getLogger(__name__)

REVOCATION_POLL_SECONDS = 1.0  # contract C4: revocations reach every instance within 2 s
LAST_SEEN_FLUSH_SECONDS = 5.0
KEY_CHECK_SECONDS = 10.0  # picks up rotations made by other instances or the CLI
# a rotated key is stored this long before it signs: every instance and every JWKS cache has it
KEY_PUBLISH_AHEAD_SECONDS = PUBLISH_AHEAD
PURGE_SECONDS = 3600.0
# Every credential the broker issues ends within the session lifetime or an STS role's longest
# session (12 h); a revocation older than that (plus clock leeway) voids nothing any more.
STS_MAX_SESSION_SECONDS = 12 * 3600.0
# GetSessionToken's longest credentials (36 h): signing keys and revocations outlive them too
USER_SESSION_MAX_SECONDS = float(USER_SESSION_MAX)
REVOCATION_LEEWAY_SECONDS = 600.0


def derive_key(kek: bytes, purpose: bytes) -> bytes:
    """A separate key per purpose, so the KEK itself never signs or MACs anything."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(kek)


def kek_file_for(settings: Settings) -> Path | None:
    db = settings.sqlite_path
    return db.with_suffix(".kek") if db is not None else None


def startup_problems(settings: Settings) -> list[str]:
    """Problems beyond the TOML schema: policies that don't parse, a missing KEK."""
    problems = policy_problems(settings)
    if settings.keys.kek is None and kek_file_for(settings) is None:
        problems.append(
            "keys.kek: is required unless the store is a SQLite file "
            "(generate one with: openssl rand -base64 32)"
        )
    return problems


def resolve_kek(settings: Settings) -> bytes:
    if settings.keys.kek is not None:
        return decode_kek(settings.keys.kek.get())
    path = kek_file_for(settings)
    if path is None:
        raise ConfigError(["keys.kek: is required unless the store is a SQLite file"])
    path.parent.mkdir(parents=True, exist_ok=True)
    kek, created = load_or_create_kek_file(path)
    if created:
        log.warning(
            "no [keys].kek configured: generated one into %s; back it up with the database, "
            "or set [keys].kek for production",
            path,
        )
    return kek


@dataclass
class Broker:
    settings: Settings
    store: Store
    keyring: KeyRing
    revocations: RevocationState
    sessions: SessionService
    roles: RoleCatalog
    iam: IamService
    authorizer: Authorizer
    credentials: CredentialVerifier
    login: LoginService
    auditor: Auditor
    clock: Clock
    clients: Mapping[str, OIDCClient]
    forward_auth: ForwardAuth
    sts: StsService
    hashing: PasswordHashing
    backchannel: BackchannelLogout
    offboarding: OffboardingService
    iam_api: IamApi
    activity: ActivityLog
    access_keys: AccessKeyService
    mfa: MfaService
    cli: CliSessions
    csrf_key: bytes = b""
    bootstrap_password: str | None = None
    _last: dict[str, float] = field(default_factory=dict)

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        http: Any,
        clock: Clock | None = None,
        bootstrap: bool = True,
        freeze_headers: HeaderFreezer = MappingProxyType,
    ) -> Broker:
        """``http`` is the ``aiohttp.ClientSession`` the OIDC clients share; ``freeze_headers``
        makes forward-auth's cached identity headers (see ``ForwardAuth``)."""
        clock = clock or SystemClock()
        problems = startup_problems(settings)
        if problems:
            raise ConfigError(problems)
        for warning in trust_policy_warnings(settings):
            log.warning("%s", warning)
        kek = resolve_kek(settings)
        db = settings.sqlite_path
        if db is not None:
            db.parent.mkdir(parents=True, exist_ok=True)
        await migrate(settings.store.url)
        store = open_store(settings.store.url)
        hashing = PasswordHashing(
            workers=settings.login.hash_workers, queue=settings.login.hash_queue
        )
        try:
            auditor = Auditor(store, clock)
            # Roles created through the IAM API may issue credentials for up to 12 hours: a
            # retired key keeps verifying until every token it may have signed has expired.
            max_token = max(
                [
                    settings.session.lifetime,
                    STS_MAX_SESSION_SECONDS,
                    USER_SESSION_MAX_SECONDS,
                    *(r.max_session_duration for r in settings.roles.values()),
                ]
            )
            keyring = KeyRing(
                store,
                algorithm=settings.keys.algorithm,
                kek=kek,
                rotate_every=settings.keys.rotate_every,
                max_token_lifetime=max_token,
                issuer=settings.server.public_url,
                clock=clock,
                publish_ahead=KEY_PUBLISH_AHEAD_SECONDS,
            )
            await keyring.load()
            revocations = RevocationState(
                store, clock, max_staleness=settings.session.revocation_max_staleness
            )
            await revocations.poll()
            iam = IamService(settings, store, auditor, clock)
            await iam.reconcile()
            roles = RoleCatalog(settings, store, clock)
            await roles.reconcile()
            authorizer = Authorizer(settings, store, clock)
            await authorizer.refresh()
            sessions = SessionService(settings, store, keyring, revocations, clock)
            clients = {
                name: OIDCClient(p, http, clock=clock)
                for name, p in settings.providers.items()
                if p.type != "local"
            }
            mfa = MfaService(
                store,
                auditor,
                clock,
                kek=kek,
                limits=settings.login,
                account_id=settings.server.account_id,
                # the label authenticator apps show: this broker's host name
                issuer=urlsplit(settings.server.public_url).hostname or "broker",
            )
            activity = ActivityLog(store, clock)
            login = LoginService(
                settings,
                store,
                clients,
                roles,
                sessions,
                auditor,
                clock,
                hashing,
                mfa=mfa,
                activity=activity,
            )
            password = (
                await bootstrap_admin(settings, store, auditor, clock, hashing)
                if bootstrap
                else None
            )
        except BaseException:
            hashing.close()
            await store.close()
            raise
        credentials = CredentialVerifier(sessions, revocations, clock)
        access_keys = AccessKeyService(
            store,
            kek=kek,
            auditor=auditor,
            clock=clock,
            user_generation=lambda: revocations.user_generation,
        )
        try:
            forward_auth = ForwardAuth(
                settings,
                credentials=credentials,
                authorizer=authorizer,
                keyring=keyring,
                auditor=auditor,
                clock=clock,
                freeze_headers=freeze_headers,
                activity=activity,
            )
            sts = StsService(
                settings,
                store=store,
                keyring=keyring,
                clients=clients,
                authorizer=authorizer,
                credentials=credentials,
                revocations=revocations,
                auditor=auditor,
                clock=clock,
                secret_key=derive_key(kek, b"broker/sts-secret"),
                registered=RegisteredProviders(
                    settings, store, lambda p: OIDCClient(p, http, clock=clock), clock
                ),
                activity=activity,
                access_keys=access_keys,
                mfa=mfa,
            )
            await sts.refresh()
        except BaseException:
            hashing.close()
            await store.close()
            raise
        offboarding = OffboardingService(store, iam, revocations, auditor, clock)

        async def refresh_iam() -> None:
            access_keys.forget()  # an Inactive or deleted key is refused from now on
            await authorizer.refresh()
            await sts.refresh()  # roles, and the providers registered through the API

        iam_api = IamApi(
            settings=settings,
            store=store,
            iam=iam,
            authorizer=authorizer,
            offboarding=offboarding,
            providers=OidcProviderService(settings, store, auditor, clock),
            auditor=auditor,
            clock=clock,
            actions=all_actions(),
            refresh=refresh_iam,
            hashing=hashing,
            activity=activity,
            access_keys=access_keys,
            mfa=mfa,
        )
        now = clock.now()
        return cls(
            settings=settings,
            store=store,
            keyring=keyring,
            revocations=revocations,
            sessions=sessions,
            roles=roles,
            iam=iam,
            authorizer=authorizer,
            credentials=credentials,
            login=login,
            auditor=auditor,
            clock=clock,
            clients=clients,
            forward_auth=forward_auth,
            sts=sts,
            hashing=hashing,
            backchannel=BackchannelLogout(settings, store, clients, revocations, auditor, clock),
            offboarding=offboarding,
            iam_api=iam_api,
            activity=activity,
            access_keys=access_keys,
            mfa=mfa,
            cli=CliSessions(settings, store, sessions, roles, sts, revocations, auditor, clock),
            csrf_key=derive_key(kek, b"broker/csrf"),
            bootstrap_password=password,
            _last={"keys": now, "purge": now, "flush": now, "checkpoint": now},
        )

    async def close(self) -> None:
        self.hashing.close()
        await self.iam_api.reports.close()  # a report cut short is started again later
        try:
            await self.sessions.flush_last_seen()
            await self.access_keys.flush()
        except StoreError:
            log.exception("could not write last-seen times at shutdown")
        # a store error is logged by the auditor, which keeps the events for close() below
        with contextlib.suppress(StoreError):
            await self.forward_auth.flush()  # folds its remembered allows into the activity
        await self.flush_activity()
        await self.auditor.close()  # commits the batched events (retrying); never raises
        await self._checkpoint_audit()  # the head as this instance leaves it, signed
        await self.store.close()

    @property
    def revocation_horizon(self) -> float:
        """How long a revocation must be kept (seconds)."""
        longest = max(
            self.settings.session.lifetime, STS_MAX_SESSION_SECONDS, USER_SESSION_MAX_SECONDS
        )
        return longest + REVOCATION_LEEWAY_SECONDS

    @property
    def audit_chain(self) -> AuditChain:
        """Checkpoints and verification of the audit trail's hash chain."""
        return AuditChain(
            self.store, self.keyring, self.clock, issuer=self.settings.server.public_url
        )

    async def rotate_keys(self, *, reason: str) -> SigningKey:
        """A new key, published now; it signs from its ``created_at`` (see ``KeyRing.rotate``)."""
        # Fail-closed: the row is written before the new key exists (its kid is not known yet;
        # ``keys.rotate`` names it once made).
        await self.auditor.record_or_fail("keys.rotate.start", "success", reason=reason)
        key = await self.keyring.rotate()
        await self.auditor.record("keys.rotate", "success", principal=key.kid, reason=reason)
        return key

    async def _scheduled_rotation(self) -> None:
        """Rotate the key if it is due, fail-closed as ``rotate_keys``: ``keys.rotate.start``
        is written (``record_or_fail``) once the ring finds the rotation due and before it
        makes the key. If it cannot be, the key stays and the next key check tries again; the
        rest of the tick goes on."""

        async def audit_first() -> None:
            await self.auditor.record_or_fail("keys.rotate.start", "success", reason="scheduled")

        try:
            rotated = await self.keyring.maybe_rotate(before_rotating=audit_first)
        except AuditUnavailable as e:
            log.warning("scheduled key rotation postponed: %s", e.reason)
            return
        if rotated is not None:
            await self.auditor.record(
                "keys.rotate", "success", principal=rotated.kid, reason="scheduled"
            )

    async def tick(self) -> None:
        """One round of periodic work; each part runs when its interval has passed."""
        now = self.clock.now()
        await self._flush_audit()
        if now - self._last["flush"] >= LAST_SEEN_FLUSH_SECONDS:
            self._last["flush"] = now
            await self.sessions.flush_last_seen()
            await self.flush_activity()
            await self.access_keys.flush()  # access keys' last use
        if now - self._last["keys"] >= KEY_CHECK_SECONDS:
            self._last["keys"] = now
            await self.keyring.refresh()
            await self.authorizer.refresh()
            await self.sts.refresh()
            await self._scheduled_rotation()
        if now - self._last.get("checkpoint", now) >= CHECKPOINT_SECONDS:
            self._last["checkpoint"] = now
            await self._checkpoint_audit()
        if now - self._last["purge"] >= PURGE_SECONDS:
            self._last["purge"] = now
            await self.store.purge_login_states(now)
            await self.store.purge_single_use(now)
            await self.store.purge_provider_logouts(now)
            await self.store.purge_login_failures(now)
            await self.store.purge_unassigned_mfa_devices(
                path=ENROL_PATH, created_before=now - ENROL_LIFETIME
            )
            await self.store.purge_sessions(now)
            horizon = now - self.revocation_horizon
            await self.store.purge_revocations(horizon)
            self.revocations.forget(horizon)

    async def _flush_audit(self) -> None:
        """Forward-auth's queued verdicts and the auditor's batch, written now. A store that
        refuses writes is logged by the auditor and retried by its writer (the events are kept);
        it says nothing about the revocation state, so it does not fail the tick."""
        with contextlib.suppress(StoreError):
            await self.forward_auth.flush()
            await self.auditor.flush()

    async def flush_activity(self) -> int:
        """Write the counted access activity (after the audit flush, which folds forward-auth's
        remembered allows into it). A store error is logged; the counts wait for the next one."""
        try:
            return await self.activity.flush()
        except StoreError as e:
            log.warning("could not write the access activity: %s", e.reason)
            return 0

    async def poll_revocations(self) -> int:
        """One revocation poll (what the polling loop runs every second); raises ``StoreError``.
        A poll that hangs (a store cut off without a reset) is given up on once the state would
        be stale anyway, so that the next one can succeed when the store is back."""
        try:
            count = await asyncio.wait_for(
                self.revocations.poll(), timeout=self.revocations.max_staleness
            )
            # IAM changed elsewhere (another instance, ``broker admin``): roles and policies
            # are current here within the same second as revocations.
            await asyncio.wait_for(self.iam_api.poll(), timeout=self.revocations.max_staleness)
            return count
        except TimeoutError:
            raise StoreError("revocation_poll_timeout") from None

    async def _checkpoint_audit(self) -> None:
        """Sign the audit chain's head (docs/audit.md). A failure is logged and retried at the
        next interval; like the audit flush, it says nothing about the revocation state."""
        try:
            await self.audit_chain.checkpoint()
        except BrokerError as e:  # the store, or the key ring
            log.warning("could not write an audit checkpoint: %s", e.reason)

    async def run_periodic(self, stop: asyncio.Event) -> None:
        await asyncio.gather(self._run_polling(stop), self._run_ticks(stop))

    async def _run_polling(self, stop: asyncio.Event) -> None:
        failing = False
        while not stop.is_set():
            try:
                await self.poll_revocations()
                if failing:
                    log.warning("revocation polling works again")
                failing = False
            except StoreError as e:
                if not failing:  # once per outage, not every second
                    log.warning("revocation polling failed: %s", e.reason)
                failing = True
            except Exception:
                log.exception("revocation polling failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=REVOCATION_POLL_SECONDS)

    async def _run_ticks(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except StoreError as e:
                log.warning("periodic work failed: %s", e.reason)
            except Exception:
                log.exception("periodic work failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=REVOCATION_POLL_SECONDS)
