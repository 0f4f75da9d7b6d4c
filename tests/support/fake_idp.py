"""A small in-process fake OpenID Connect provider, for the edge cases a real one never produces.

It serves discovery, a JWKS, an authorization endpoint (which redirects straight back with a
code: nobody logs in) and a token endpoint (client authentication, PKCE and redirect URI
checked), and it mints any ID token you ask for: valid, expired, signed with the wrong key, with
``alg=none``, HMAC-signed with the public key, with ``jku``/``crit`` headers, or not JSON at all.

Typical use, with pytest-aiohttp::

    idp = FakeIdP(clock=clock, alg="ES256")
    idp.bind(await aiohttp_server(idp.app))        # learns its issuer URL (127.0.0.1:<port>)
    client = OIDCClient(idp.provider_config(), http, clock=clock)
    token = idp.mint({"nonce": "n-1"})              # default claims, overridden
    token = idp.mint(header={"jku": "https://evil.example/jwks"})
    idp.rotate()                                    # a new signing key replaces the old one
    idp.delays["token"] = 2.0                       # a slow endpoint
    idp.gates["jwks"] = asyncio.Event()             # ... or one that answers when you say so
    idp.overrides["token"] = Override(500, b"oops", "text/plain")
    idp.hits["jwks"]                                # how many times each endpoint was called
    idp.id_token_factory = lambda nonce: idp.mint({"nonce": nonce}, alg="none")
                                                    # the token endpoint's next ID tokens
    idp.nonces, idp.issued_id_tokens                # nonces seen at /authorize; ID tokens issued

Endpoint names (for ``hits``, ``gates``, ``delays``, ``overrides``): ``discovery``, ``jwks``,
``authorize``, ``token``. Times come from the ``clock`` shared with the code under test.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web
from aiohttp.test_utils import BaseTestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms
from yarl import URL

from broker.clock import Clock
from broker.config import ProviderConfig, Secret

CLIENT_ID = "broker-test"
CLIENT_SECRET = "fake-idp-secret-0123456789"
_HMAC = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
_ALGORITHMS = get_default_algorithms()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def s256(verifier: str) -> str:
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclass
class FakeKey:
    """A signing key pair. ``publish_alg``: put ``alg`` into the JWK (providers differ)."""

    kid: str
    alg: str
    private_key: Any
    use: str | None = "sig"
    publish_alg: bool = True

    @classmethod
    def generate(cls, alg: str = "RS256", kid: str | None = None) -> FakeKey:
        private: Any
        if alg.startswith(("RS", "PS")):
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            private = ec.generate_private_key(ec.SECP256R1())
        elif alg == "ES384":
            private = ec.generate_private_key(ec.SECP384R1())
        elif alg == "ES512":
            private = ec.generate_private_key(ec.SECP521R1())
        elif alg == "EdDSA":
            private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(f"no key type for {alg}")
        return cls(kid=kid or f"{alg.lower()}-{secrets.token_hex(4)}", alg=alg, private_key=private)

    @property
    def public_key(self) -> Any:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = dict(_ALGORITHMS[self.alg].to_jwk(self.public_key, as_dict=True))
        jwk["kid"] = self.kid
        if self.use is not None:
            jwk["use"] = self.use
        if self.publish_alg:
            jwk["alg"] = self.alg
        else:
            jwk.pop("alg", None)
        return jwk

    def public_pem(self) -> bytes:
        pem: bytes = self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem


def encode_jws(
    header: Mapping[str, Any] | bytes,
    payload: Mapping[str, Any] | bytes,
    *,
    alg: str,
    key: FakeKey | None = None,
    hmac_secret: bytes | None = None,
) -> str:
    """A compact JWS from exactly this header and payload (bytes are used as they are).

    ``alg`` chooses how to sign (it need not match the header): ``none`` gives an empty
    signature, ``HS*`` needs ``hmac_secret``, anything else signs with ``key``.
    """
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    p = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64url(h)}.{b64url(p)}".encode("ascii")
    if alg == "none":
        sig = b""
    elif alg in _HMAC:
        if hmac_secret is None:
            raise ValueError("HMAC signing needs hmac_secret")
        sig = hmac.new(hmac_secret, signing_input, _HMAC[alg]).digest()
    else:
        if key is None:
            raise ValueError(f"{alg} signing needs a key")
        sig = _ALGORITHMS[alg].sign(signing_input, key.private_key)
    return f"{signing_input.decode('ascii')}.{b64url(sig)}"


def tamper_signature(token: str) -> str:
    """The same token with one bit of its signature flipped."""
    head, payload, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{head}.{payload}.{b64url(bytes(raw))}"


@dataclass
class Override:
    """Answer an endpoint with this instead of the normal response."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"

    @classmethod
    def json(cls, status: int, doc: Any) -> Override:
        return cls(status, json.dumps(doc).encode())


@dataclass
class TokenRequest:
    """What the token endpoint received."""

    authorization: str | None
    form: dict[str, str]


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None


@dataclass
class FakeIdP:
    clock: Clock
    alg: str = "RS256"
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    issuer: str = "http://127.0.0.1:0"  # set by bind()
    keys: list[FakeKey] = field(default_factory=list)
    extra_jwks: list[dict[str, Any]] = field(default_factory=list)  # published as they are
    metadata_overrides: dict[str, Any] = field(default_factory=dict)  # a None value removes
    token_auth_methods: tuple[str, ...] = ("client_secret_basic", "client_secret_post")
    iss_parameter: bool = True  # authorization_response_iss_parameter_supported; sends iss
    id_token_claims: dict[str, Any] = field(default_factory=dict)  # extra, in issued tokens
    authorize_error: tuple[str, str] | None = None  # (error, error_description) to redirect with
    hits: Counter[str] = field(default_factory=Counter)
    delays: dict[str, float] = field(default_factory=dict)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)  # answer once the event is set
    entered: defaultdict[str, asyncio.Event] = field(  # set when a request reaches the endpoint
        default_factory=lambda: defaultdict(asyncio.Event)
    )
    overrides: dict[str, Override] = field(default_factory=dict)
    token_requests: list[TokenRequest] = field(default_factory=list)
    # When set, the token endpoint answers with the ID token this returns, given the nonce of the
    # authorization request the code came from (None when it had none), instead of minting one.
    id_token_factory: Callable[[str | None], str] | None = None
    nonces: list[str | None] = field(default_factory=list)  # as received at /authorize, in order
    issued_id_tokens: list[str] = field(default_factory=list)  # as returned by /token, in order
    _grants: dict[str, _Grant] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys.append(FakeKey.generate(self.alg))
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        self.app = app

    # --- set-up -------------------------------------------------------------------------

    def bind(self, server: BaseTestServer) -> None:
        """Learn the issuer from the started test server."""
        self.issuer = str(server.make_url("")).rstrip("/")

    def url(self, path: str) -> str:
        return self.issuer + path

    def provider_config(self, **overrides: Any) -> ProviderConfig:
        """A ``ProviderConfig`` for this provider (``type="oidc"``, ``name="fake"``)."""
        values: dict[str, Any] = {
            "name": "fake",
            "type": "oidc",
            "issuer": self.issuer,
            "client_id": self.client_id,
            "client_secret": Secret(self.client_secret),
            "audiences": (self.client_id,),
            "leeway": 60,
            "timeout": 5,
            "discovery_ttl": 3600,
            "jwks_refetch_cooldown": 60,
        }
        values.update(overrides)
        return ProviderConfig(**values)

    @property
    def signing_key(self) -> FakeKey:
        return self.keys[0]

    def rotate(self, *, keep_old: bool = False) -> FakeKey:
        """A new signing key of the same algorithm; the old one is dropped unless kept."""
        new = FakeKey.generate(self.signing_key.alg)
        self.keys = [new, *self.keys] if keep_old else [new]
        return new

    def metadata(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "issuer": self.issuer,
            "authorization_endpoint": self.url("/authorize"),
            "token_endpoint": self.url("/token"),
            "jwks_uri": self.url("/jwks"),
            "userinfo_endpoint": self.url("/userinfo"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": sorted({k.alg for k in self.keys}),
            "token_endpoint_auth_methods_supported": list(self.token_auth_methods),
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": self.iss_parameter,
        }
        for k, v in self.metadata_overrides.items():
            if v is None:
                doc.pop(k, None)
            else:
                doc[k] = v
        return doc

    # --- minting --------------------------------------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(self.clock.now())
        c: dict[str, Any] = {
            "iss": self.issuer,
            "sub": "user-1",
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "email": "user-1@example.com",
        }
        c.update(overrides)
        return c

    def mint(
        self,
        claims: Mapping[str, Any] | None = None,
        *,
        header: Mapping[str, Any] | None = None,
        omit: Iterable[str] = (),
        key: FakeKey | None = None,
        alg: str | None = None,
        hmac_secret: bytes | None = None,
    ) -> str:
        """An ID token: default claims updated with ``claims``, minus the names in ``omit``
        (claims or header members); ``header`` adds to/overrides ``alg``, ``kid``, ``typ``.
        Signed by ``key`` (default: the current signing key) with ``alg`` (default: the key's;
        ``none`` and ``HS*`` work too, see ``encode_jws``)."""
        key = key or self.signing_key
        alg = alg or key.alg
        payload = self.claims(**dict(claims or {}))
        hdr: dict[str, Any] = {"alg": alg, "kid": key.kid, "typ": "JWT"}
        hdr.update(header or {})
        for name in omit:
            payload.pop(name, None)
            hdr.pop(name, None)
        return encode_jws(hdr, payload, alg=alg, key=key, hmac_secret=hmac_secret)

    # --- endpoints ------------------------------------------------------------------------

    async def _enter(self, name: str) -> web.Response | None:
        self.hits[name] += 1
        self.entered[name].set()
        gate = self.gates.get(name)
        if gate is not None:
            await gate.wait()
        delay = self.delays.get(name, 0.0)
        if delay:
            await asyncio.sleep(delay)
        o = self.overrides.get(name)
        if o is not None:
            return web.Response(status=o.status, body=o.body, content_type=o.content_type)
        return None

    async def _discovery(self, request: web.Request) -> web.Response:
        return await self._enter("discovery") or web.json_response(self.metadata())

    async def _jwks(self, request: web.Request) -> web.Response:
        keys = [k.public_jwk() for k in self.keys] + list(self.extra_jwks)
        return await self._enter("jwks") or web.json_response({"keys": keys})

    async def _authorize(self, request: web.Request) -> web.Response:
        o = await self._enter("authorize")
        if o is not None:
            return o
        q = request.query
        if q.get("client_id") != self.client_id or q.get("response_type") != "code":
            return web.Response(status=400, text="bad client_id or response_type")
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return web.Response(status=400, text="PKCE S256 required")
        params = {"state": q.get("state", "")}
        if self.authorize_error is not None:
            params["error"], params["error_description"] = self.authorize_error
        else:
            code = secrets.token_urlsafe(16)
            self._grants[code] = _Grant(
                client_id=self.client_id,
                redirect_uri=q["redirect_uri"],
                code_challenge=q["code_challenge"],
                nonce=q.get("nonce"),
            )
            self.nonces.append(q.get("nonce"))
            params["code"] = code
        if self.iss_parameter:
            params["iss"] = self.issuer
        location = URL(q["redirect_uri"]).update_query(params)
        raise web.HTTPFound(location)

    def _client_authenticated(self, request: web.Request, form: Mapping[str, str]) -> bool:
        auth = request.headers.get("Authorization")
        if auth is not None:
            if not auth.startswith("Basic "):
                return False
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            return (unquote(user), unquote(password)) == (self.client_id, self.client_secret)
        return (form.get("client_id"), form.get("client_secret")) == (
            self.client_id,
            self.client_secret,
        )

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.token_requests.append(TokenRequest(request.headers.get("Authorization"), form))
        o = await self._enter("token")
        if o is not None:
            return o

        def error(code: str, status: int = 400) -> web.Response:
            return web.json_response({"error": code, "error_description": code}, status=status)

        if not self._client_authenticated(request, form):
            return error("invalid_client", 401)
        if form.get("grant_type") != "authorization_code":
            return error("unsupported_grant_type")
        grant = self._grants.pop(form.get("code", ""), None)
        if grant is None or grant.redirect_uri != form.get("redirect_uri"):
            return error("invalid_grant")
        if s256(form.get("code_verifier", "")) != grant.code_challenge:
            return error("invalid_grant")
        if self.id_token_factory is not None:
            id_token = self.id_token_factory(grant.nonce)
        else:
            extra = dict(self.id_token_claims)
            if grant.nonce is not None:
                extra.setdefault("nonce", grant.nonce)
            id_token = self.mint(extra)
        self.issued_id_tokens.append(id_token)
        return web.json_response(
            {
                "access_token": secrets.token_urlsafe(16),
                "token_type": "Bearer",
                "expires_in": 3600,
                "scope": "openid email profile",
                "id_token": id_token,
            }
        )
