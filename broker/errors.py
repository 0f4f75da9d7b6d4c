"""One exception tree for the whole broker.

Every error carries a protocol ``code`` (an OAuth-style error code, or an AWS code for STS),
an HTTP ``status`` and a ``reason``: a short, specific, machine-readable explanation that goes to
the audit log and to operators. The ``public_message`` is what an untrusted caller may see.
Each web surface (OAuth JSON, STS XML, forward-auth, HTML) renders these in its own dialect.
"""

from __future__ import annotations


class BrokerError(Exception):
    """Base of every error the broker raises on purpose."""

    code: str = "server_error"
    status: int = 500
    public_message: str = "The broker could not complete the request."

    def __init__(self, reason: str = "", *, public_message: str | None = None) -> None:
        super().__init__(reason or self.public_message)
        self.reason = reason or self.code
        if public_message is not None:
            self.public_message = public_message


# --- configuration -------------------------------------------------------------------------


class ConfigError(BrokerError):
    """The configuration file is invalid; ``problems`` lists every problem found."""

    code = "invalid_config"

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)


# --- requests from outside -----------------------------------------------------------------


class InvalidRequest(BrokerError):
    """RFC 6749 §5.2 ``invalid_request``: a parameter is missing, repeated or malformed."""

    code = "invalid_request"
    status = 400
    public_message = "The request is missing a parameter or has a malformed one."


class NotFound(BrokerError):
    code = "not_found"
    status = 404
    public_message = "Not found."


class Unauthenticated(BrokerError):
    """No valid credential was presented."""

    code = "unauthenticated"
    status = 401
    public_message = "You need to sign in."


class AccessDenied(BrokerError):
    """Signed in (or otherwise identified) but not allowed."""

    code = "access_denied"
    status = 403
    public_message = "You are not allowed to do that."


class RateLimited(BrokerError):
    code = "rate_limited"
    status = 429
    public_message = "Too many attempts; wait a little and try again."


class CsrfError(BrokerError):
    code = "csrf_failed"
    status = 403
    public_message = "The form expired or did not come from this site. Go back and try again."


# --- login and tokens ----------------------------------------------------------------------


class LoginError(BrokerError):
    """A login attempt failed; ``reason`` says which check failed."""

    code = "login_failed"
    status = 400
    public_message = "The sign-in did not succeed."


class InvalidState(LoginError):
    """The ``state`` is missing, unknown, expired, used, or belongs to another browser."""

    code = "invalid_state"
    public_message = "This sign-in link has expired or was already used. Start again."


class ProviderError(LoginError):
    """The identity provider answered with an error (for example ``access_denied``)."""

    code = "provider_error"
    public_message = "The identity provider did not sign you in."


class ProviderUnavailable(LoginError):
    """The identity provider could not be reached or answered nonsense."""

    code = "provider_unavailable"
    status = 502
    public_message = "The identity provider could not be reached. Try again later."


class InvalidToken(BrokerError):
    """A presented token failed verification. ``reason`` names the failed check."""

    code = "invalid_token"
    status = 401
    public_message = "The token is not valid."


class InvalidIdToken(InvalidToken):
    """An ID token from a provider failed validation (OIDC Core §3.1.3.7)."""

    code = "invalid_id_token"


class ExpiredToken(InvalidToken):
    code = "expired_token"
    public_message = "The token has expired."


class InvalidCredentials(LoginError):
    """Wrong user name or password (the message never says which)."""

    code = "invalid_credentials"
    status = 401
    public_message = "Wrong user name or password."


class NoRoleAvailable(AccessDenied):
    """The identity is valid but no role's trust policy admits it."""

    code = "no_role"
    public_message = "You signed in, but no role is available to you. Ask an administrator."


# --- storage -------------------------------------------------------------------------------


class StoreError(BrokerError):
    code = "store_error"
    status = 503
    public_message = "The broker's store is unavailable. Try again later."


class RecordNotFound(StoreError):
    code = "not_found"
    status = 404
    public_message = "Not found."


class AlreadyExists(StoreError):
    code = "already_exists"
    status = 409
    public_message = "It already exists."


class KeyRingError(BrokerError):
    code = "key_error"
    status = 503
    public_message = "The broker's signing keys are unavailable."
