"""AWS Signature Version 4 (pure): parse, check and verify a signed request.

The server recomputes the canonical request itself from what it received (method, raw path,
raw query, the signed headers' values, the SHA-256 of the body actually received) and compares
signatures in constant time. Only the ``Authorization`` header form is accepted (not presigned
query strings). Rules, checked in this order by :func:`parse_authorization` and
:func:`check_scope`:

- ``AWS4-HMAC-SHA256 Credential=<akid>/<yyyymmdd>/<region>/sts/aws4_request,
  SignedHeaders=<a;b;c>, Signature=<64 hex>``, each part once (``IncompleteSignature``);
- ``X-Amz-Date`` present and ``yyyymmddTHHMMSSZ`` (``IncompleteSignature``);
- the credential scope's date equals ``X-Amz-Date``'s date, service ``sts``, terminator
  ``aws4_request``, any region (``SignatureDoesNotMatch``);
- ``host`` and ``x-amz-date`` are signed, and so is ``x-amz-security-token`` when sent
  (``SignatureDoesNotMatch``);
- ``X-Amz-Date`` within 5 minutes of the server's clock (``SignatureDoesNotMatch``,
  "Signature expired" as AWS says).

The body is always bound: the payload hash is computed from the received body, never taken
from ``X-Amz-Content-SHA256``. Reference: "Create a signed AWS API request", AWS IAM User Guide.

Imports only the standard library and ``broker.errors``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from calendar import timegm
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from time import gmtime, strftime
from urllib.parse import quote, unquote

from broker.errors import StsIncompleteSignature, StsSignatureDoesNotMatch

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "sts"
TERMINATOR = "aws4_request"
WINDOW_SECONDS = 300
_AMZ_DATE = re.compile(r"(\d{8})T(\d{6})Z")
_REGION = re.compile(r"[a-z0-9-]{1,32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class SignedRequest:
    """The signature claims of a request, parsed but not yet verified."""

    access_key_id: str
    scope_date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    timestamp: float

    @property
    def scope(self) -> str:
        return f"{self.scope_date}/{self.region}/{self.service}/{self.terminator}"


def _incomplete(reason: str, message: str) -> StsIncompleteSignature:
    return StsIncompleteSignature(reason, public_message=message)


def parse_amz_date(value: str) -> float:
    m = _AMZ_DATE.fullmatch(value)
    if m is None:
        raise _incomplete("bad_amz_date", "X-Amz-Date must be in the ISO8601 basic format.")
    d, t = m.group(1), m.group(2)
    try:
        return float(
            timegm(
                (int(d[:4]), int(d[4:6]), int(d[6:]), int(t[:2]), int(t[2:4]), int(t[4:]), 0, 0, 0)
            )
        )
    except (ValueError, OverflowError):
        raise _incomplete("bad_amz_date", "X-Amz-Date is not a valid date.") from None


def parse_authorization(authorization: str, amz_date: str | None) -> SignedRequest:
    """Parse the ``Authorization`` header (and ``X-Amz-Date``); raises ``IncompleteSignature``."""
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(
            "unsupported_algorithm",
            f"Unsupported AWS 'algorithm': '{algorithm[:32]}'; only {ALGORITHM} is accepted.",
        )
    parts: dict[str, str] = {}
    for item in rest.split(","):
        name, eq, value = item.strip().partition("=")
        if not eq or name not in ("Credential", "SignedHeaders", "Signature") or name in parts:
            raise _incomplete("bad_authorization_part", "Malformed Authorization header.")
        parts[name] = value.strip()
    for name in ("Credential", "SignedHeaders", "Signature"):
        if not parts.get(name):
            raise _incomplete(
                f"missing_{name.lower()}",
                f"Authorization header requires '{name}' parameter.",
            )
    credential = parts["Credential"].split("/")
    if len(credential) != 5 or not all(credential):
        raise _incomplete(
            "bad_credential",
            "Credential should be scoped to a valid region, service and date.",
        )
    if amz_date is None:
        raise _incomplete(
            "missing_amz_date", "Authorization header requires existence of an 'X-Amz-Date' header."
        )
    signed = tuple(parts["SignedHeaders"].split(";"))
    if not all(_HEADER_NAME.fullmatch(h) for h in signed) or len(set(signed)) != len(signed):
        raise _incomplete("bad_signed_headers", "Malformed SignedHeaders.")
    if not _HEX64.fullmatch(parts["Signature"]):
        raise StsSignatureDoesNotMatch("malformed_signature")
    return SignedRequest(
        access_key_id=credential[0],
        scope_date=credential[1],
        region=credential[2],
        service=credential[3],
        terminator=credential[4],
        signed_headers=signed,
        signature=parts["Signature"],
        amz_date=amz_date,
        timestamp=parse_amz_date(amz_date),
    )


def _iso(t: float) -> str:
    return strftime("%Y%m%dT%H%M%SZ", gmtime(t))


def check_scope(
    req: SignedRequest,
    *,
    now: float,
    sent_headers: Sequence[str],
    window: float = WINDOW_SECONDS,
    service: str = SERVICE,
) -> None:
    """Scope, signed-header and clock rules (before any key is looked at). ``service`` is the
    credential scope's service the endpoint answers as (``sts``, or ``iam`` for the IAM API)."""
    if req.scope_date != req.amz_date[:8]:
        raise StsSignatureDoesNotMatch(
            "scope_date_mismatch",
            public_message="Date in Credential scope does not match YYYYMMDD from ISO-8601 "
            "version of date from HTTP.",
        )
    if req.service != service:
        raise StsSignatureDoesNotMatch(
            "wrong_service",
            public_message=f"Credential should be scoped to correct service: '{service}'.",
        )
    if req.terminator != TERMINATOR or not _REGION.fullmatch(req.region):
        raise StsSignatureDoesNotMatch(
            "bad_scope",
            public_message="Credential should be scoped with a valid terminator: 'aws4_request'.",
        )
    required = ["host", "x-amz-date"]
    if "x-amz-security-token" in sent_headers:
        required.append("x-amz-security-token")
    for name in required:
        if name not in req.signed_headers:
            raise StsSignatureDoesNotMatch(
                f"unsigned_header:{name}",
                public_message=f"'{name}' must be a signed header.",
            )
    if abs(now - req.timestamp) > window:
        raise StsSignatureDoesNotMatch(
            "signature_expired",
            public_message=(
                f"Signature expired: {req.amz_date} is now earlier than "
                f"{_iso(now - window)} ({_iso(now)} - 5 min.)"
                if req.timestamp < now
                else f"Signature not yet current: {req.amz_date} is still later than "
                f"{_iso(now + window)} ({_iso(now)} + 5 min.)"
            ),
        )


# --- the canonical request (the spec's task 1) ---------------------------------------------------


def _uri_encode(text: str) -> str:
    return quote(text, safe="-_.~")


def canonical_uri(raw_path: str) -> str:
    """Non-S3 services: remove dot segments, then URI-encode the (already encoded) path."""
    segments: list[str] = []
    for seg in raw_path.split("/")[1:]:
        if seg == ".":
            continue
        if seg == "..":
            if segments:
                segments.pop()
            continue
        segments.append(seg)
    path = "/" + "/".join(segments)
    if raw_path.endswith("/") and path != "/":
        path += "/"
    return quote(path, safe="/~")


def canonical_query(raw_query: str) -> str:
    pairs: list[tuple[str, str]] = []
    for item in raw_query.split("&") if raw_query else ():
        if not item:
            continue
        k, _, v = item.partition("=")
        pairs.append((_uri_encode(unquote(k)), _uri_encode(unquote(v))))
    pairs.sort()
    return "&".join(f"{k}={v}" for k, v in pairs)


def canonical_headers(headers: Mapping[str, Sequence[str]], signed: Sequence[str]) -> str:
    """``name:value\\n`` for each signed header; several values joined by commas, whitespace
    trimmed and collapsed. A signed header that was not sent signs as an empty value."""
    lines = []
    for name in signed:
        values = headers.get(name, ())
        lines.append(f"{name}:{','.join(_SPACES.sub(' ', v.strip()) for v in values)}\n")
    return "".join(lines)


def canonical_request(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, Sequence[str]],
    signed_headers: Sequence[str],
    body: bytes,
) -> str:
    return "\n".join(
        [
            method.upper(),
            canonical_uri(raw_path or "/"),
            canonical_query(raw_query),
            canonical_headers(headers, signed_headers),
            ";".join(signed_headers),
            hashlib.sha256(body).hexdigest(),
        ]
    )


def string_to_sign(req: SignedRequest, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{req.amz_date}\n{req.scope}\n{digest}"


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()

    return mac(mac(mac(mac(("AWS4" + secret).encode("utf-8"), date), region), service), TERMINATOR)


def signature(secret: str, req: SignedRequest, canonical: str) -> str:
    key = signing_key(secret, req.scope_date, req.region, req.service)
    return hmac.new(key, string_to_sign(req, canonical).encode("utf-8"), hashlib.sha256).hexdigest()


def verify(
    req: SignedRequest,
    secret: str,
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Mapping[str, Sequence[str]],
    body: bytes,
) -> None:
    """Recompute the signature and compare in constant time; ``SignatureDoesNotMatch``."""
    canonical = canonical_request(
        method=method,
        raw_path=raw_path,
        raw_query=raw_query,
        headers=headers,
        signed_headers=req.signed_headers,
        body=body,
    )
    expected = signature(secret, req, canonical)
    if not hmac.compare_digest(expected.encode("ascii"), req.signature.encode("ascii")):
        raise StsSignatureDoesNotMatch("bad_signature")
