"""Pure rules of the CLI's OAuth 2.0 flows: the loopback redirect (RFC 8252 §7.3) and user codes
(RFC 8628 §6.1).

Only ``http://127.0.0.1:<port>/callback`` and ``http://[::1]:<port>/callback`` are accepted as a
redirect: no host name (``localhost`` can be made to resolve elsewhere, §8.3), no query, no
fragment, no user info, an explicit port. Anything else is an error page, never a redirect.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from broker.errors import InvalidRequest

CLIENT_ID = "broker-cli"
LOOPBACK_HOSTS = ("127.0.0.1", "[::1]")
CALLBACK_PATH = "/callback"
MAX_REDIRECT_LENGTH = 64
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # no vowels: no words (RFC 8628 §6.1)


def check_client(client_id: str | None) -> None:
    if client_id != CLIENT_ID:
        raise InvalidRequest(
            "unknown_client", public_message=f"The only client here is {CLIENT_ID}."
        )


def loopback_port(redirect_uri: str | None) -> int:
    """The port of an acceptable loopback redirect URI; ``InvalidRequest`` for anything else."""
    bad = InvalidRequest(
        "redirect_uri_not_loopback",
        public_message="redirect_uri must be http://127.0.0.1:<port>/callback.",
    )
    if not redirect_uri or len(redirect_uri) > MAX_REDIRECT_LENGTH or not redirect_uri.isascii():
        raise bad
    try:
        u = urlsplit(redirect_uri)
        port = u.port
    except ValueError as e:
        raise bad from e
    host = u.netloc.rsplit(":", 1)[0]
    if (
        u.scheme != "http"
        or host not in LOOPBACK_HOSTS
        or port is None
        or not 0 < port < 65536
        or u.netloc != f"{host}:{port}"  # no user info, no leading zeros or spaces
        or u.path != CALLBACK_PATH
        or u.query
        or u.fragment
        or "#" in redirect_uri
        or "?" in redirect_uri
    ):
        raise bad
    return port


def normalize_user_code(raw: str) -> str:
    """``bcdf ghjk`` / ``BCDF-GHJK`` -> ``BCDFGHJK`` (§6.1: case and separators do not matter);
    "" when it cannot be one of ours."""
    code = "".join(c for c in raw[:32].upper() if c not in "- ")
    if len(code) != 8 or any(c not in USER_CODE_ALPHABET for c in code):
        return ""
    return code
