"""``POST /console/validate``: the policy editor's live validator.

A signed-in console caller posts a form with ``document`` (JSON text) and ``kind`` (``identity``
for permission policies, ``resource`` for trust policies) and gets
``validate_policy(document, kind=kind).to_dict()`` back as JSON, plus the document's size as IAM
counts it (characters without whitespace) against the limit the service enforces (6,144 for a
managed policy, 4,096 for a trust policy); a document over it gets a ``POLICY_TOO_LARGE`` error.

It changes nothing, so it consumes no single-use form value; it must still come from the
console's own pages: the console's CSRF token (purpose ``console``, bound to the session) in the
``X-CSRF-Token`` header, and the ``Origin`` (when sent) the broker's own. The body is at most
:data:`MAX_BODY` bytes (413 beyond), URL-encoded UTF-8 with only the expected fields (400
otherwise). The validator itself never raises for a bad document (deep nesting, huge numbers).

Any page uses it through markup only (the script in ``broker.js`` finds it)::

    <textarea id="X" name="..." data-validate="identity|resource" aria-describedby="X-findings">
    <div id="X-findings" class="findings" aria-live="polite"></div>

``report(document, kind)`` is the same answer for a page that validates on save (no script):
``console/findings.html``'s ``findings(report)`` macro renders it.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal
from urllib.parse import parse_qsl

from aiohttp import web

from broker.domain.policy.validate import validate_policy
from broker.errors import InvalidRequest
from broker.service.iam import MAX_DOCUMENT_CHARS
from broker.service.role_admin import TRUST_POLICY_MAX_CHARS
from broker.web.bodies import read_body
from broker.web.console.base import CSRF_PURPOSE, console
from broker.web.csrf import check_csrf

MAX_BODY = 64 * 1024  # bytes of the posted form; a policy is at most 6,144 characters
CSRF_HEADER = "X-CSRF-Token"
LIMITS: dict[str, int] = {"identity": MAX_DOCUMENT_CHARS, "resource": TRUST_POLICY_MAX_CHARS}
_WHITESPACE = re.compile(r"\s")


def size_of(document: str, parsed: Any) -> int:
    """The size IAM limits: characters without whitespace, of the document as the service
    stores it (re-serialized) when it parses, else of the text as typed."""
    if parsed is not None:
        return len(_WHITESPACE.sub("", json.dumps(parsed, ensure_ascii=False)))
    return len(_WHITESPACE.sub("", document))


def report(document: str, kind: Literal["identity", "resource"] = "identity") -> dict[str, Any]:
    """What the validator answers for ``document``: ``ok``, ``errors`` and ``warnings`` (each a
    finding: severity, code, path, message, fix), ``size`` and ``limit``."""
    result = validate_policy(document, kind=kind)
    out = result.to_dict()
    limit = LIMITS[kind]
    size = size_of(document, dict(result.policy.document) if result.policy else None)
    out["size"] = size
    out["limit"] = limit
    if size > limit:
        out["ok"] = False
        out["errors"].append(
            {
                "severity": "error",
                "code": "POLICY_TOO_LARGE",
                "path": "",
                "message": f"The policy is {size:,} characters (without whitespace); "
                f"at most {limit:,} are allowed.",
                "fix": "Split it into several policies, or use wildcards for long lists.",
            }
        )
    return out


def _bad(reason: str, message: str) -> InvalidRequest:
    return InvalidRequest(reason, public_message=message)


async def validate(request: web.Request) -> web.StreamResponse:
    c = await console(request)
    b = c.broker
    check_csrf(
        request,
        request.headers.get(CSRF_HEADER, ""),
        key=b.csrf_key,
        purpose=CSRF_PURPOSE,
        binding=c.credential.session_id,
        public_url=b.settings.server.public_url,
    )
    raw = await read_body(request, MAX_BODY)
    try:
        fields = parse_qsl(
            raw.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=4,
        )
    except ValueError:  # not UTF-8 (UnicodeDecodeError), too many fields
        raise _bad("malformed_form", "The request body is not a valid form.") from None
    form: dict[str, str] = {}
    for key, value in fields:
        if key in form:
            raise _bad("duplicate_field", f"{key[:40]}: given twice.")
        form[key] = value
    kind = form.get("kind", "identity")
    if kind not in ("identity", "resource"):
        raise _bad("bad_kind", "kind: expected identity or resource.")
    document = form.get("document", "")
    answer = report(document, "resource" if kind == "resource" else "identity")
    resp = web.json_response(answer)
    resp.headers["Cache-Control"] = "no-store"
    return resp


ROUTES = (("POST", "/console/validate", validate),)
