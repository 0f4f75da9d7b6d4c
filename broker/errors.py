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
    retry_after: int | None = None  # seconds; surfaces send it as ``Retry-After``

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


class RequestTooLarge(InvalidRequest):
    """The body is larger than the endpoint reads (HTTP 413, RFC 9110 §15.5.14)."""

    status = 413
    public_message = "The request body is too large."


class MalformedPolicy(InvalidRequest):
    """A policy document from the caller does not parse or is too large, or an attached one
    no longer parses (IAM's ``MalformedPolicyDocument``); ``reason`` says which and why."""


class NotFound(BrokerError):
    code = "not_found"
    status = 404
    public_message = "Not found."


class Conflict(BrokerError):
    """The request clashes with the current state (IAM's ``DeleteConflict``, a read-only
    record declared in the config file)."""

    code = "conflict"
    status = 409
    public_message = "The request conflicts with the current state."


class ReadOnlyFromConfig(Conflict):
    """The record is declared in the configuration file and read-only through the API (IAM's
    ``UnmodifiableEntity``)."""


class LimitExceeded(Conflict):
    """A quota would be exceeded (tags per entity, versions per policy, ...)."""

    code = "limit_exceeded"


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


class InvalidMfaCode(AccessDenied):
    """An MFA code that is malformed, wrong, outside the time window, already used, or for a
    device the user does not hold (the message never says which)."""

    code = "invalid_mfa_code"
    status = 401
    public_message = "That code is not valid. Enter the current code from your authenticator."


class RateLimited(BrokerError):
    code = "rate_limited"
    status = 429
    public_message = "Too many attempts; wait a little and try again."

    def __init__(self, reason: str = "", *, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class Overloaded(BrokerError):
    """The broker refuses work it cannot queue (the password-hashing pool is full; no request
    slot within ``[server] queue_timeout``: ``broker.web.admission``), rather than letting it
    pile up and stall everything else. Each surface answers its own 503 with ``Retry-After``:
    STS/IAM ``ServiceUnavailable``, OAuth ``temporarily_unavailable`` (RFC 6749 §4.1.2.1),
    forward-auth a bare 503 (the proxy denies), pages an HTML 503."""

    code = "temporarily_unavailable"
    status = 503
    public_message = "The service is busy; try again in a moment."

    def __init__(self, reason: str = "", *, retry_after: int = 1) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


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


class UnknownKey(InvalidToken):
    """The token names a key (``kid``) the verifier does not have (yet): reason ``unknown_kid``."""


class InvalidIdToken(InvalidToken):
    """An ID token from a provider failed validation (OIDC Core §3.1.3.7)."""

    code = "invalid_id_token"


class ExpiredIdToken(InvalidIdToken):
    """An ID token (or logout token) past its ``exp``: reason ``expired``."""


class InvalidLogoutToken(InvalidRequest):
    """OpenID Connect Back-Channel Logout 1.0 §2.8: the logout token failed validation, or was
    seen before; answered 400 with an OAuth 2.0 ``invalid_request`` error."""

    public_message = "The logout token is not valid."


class ExpiredToken(InvalidToken):
    code = "expired_token"
    public_message = "The token has expired."


class TokenExpired(Unauthenticated):
    """A broker credential that verified but for its expiry (reason ``token_expired``): a session
    may still be renewed, STS answers ``ExpiredToken``. Any other ``Unauthenticated`` is final."""


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


class RevocationStateStale(BrokerError):
    """The in-memory revocation state has not been refreshed from the store for longer than
    ``[session] revocation_max_staleness``: no credential can be shown unrevoked, so each one
    that needs the state is refused (fail closed) until a poll succeeds again."""

    code = "temporarily_unavailable"
    status = 503
    public_message = "The broker cannot check revocations now. Try again later."

    def __init__(self, reason: str = "revocation_state_stale") -> None:
        super().__init__(reason)


class AuditUnavailable(StoreError):
    """The audit row of a change or a credential could not be written, so the request fails
    and the change is not made (nothing is issued without its audit row)."""

    code = "audit_unavailable"
    status = 503
    public_message = "The broker cannot record this request now; try again later."


class KeyRingError(BrokerError):
    code = "key_error"
    status = 503
    public_message = "The broker's signing keys are unavailable."


# --- STS (the AWS Query protocol) ----------------------------------------------------------


class StsError(BrokerError):
    """An error of the AWS-compatible STS API, rendered as ``ErrorResponse/Error{Type,Code,
    Message}``. ``code`` is AWS's error code and ``status`` its HTTP status; ``sts_type`` is
    ``Sender`` (the caller's fault) or ``Receiver`` (ours). The ``public_message`` is the
    ``Message`` element: it never carries the ``reason``, which goes to the audit log."""

    sts_type: str = "Sender"
    code = "InvalidRequest"
    status = 400


class StsInvalidIdentityToken(StsError):
    """The web identity token could not be validated (signature, issuer, audience, type)."""

    code = "InvalidIdentityToken"
    public_message = "The web identity token that was passed could not be validated by the broker."


class StsExpiredTokenException(StsError):
    """The web identity token has expired."""

    code = "ExpiredTokenException"
    public_message = "The web identity token that was passed is expired or is not valid."


class StsIDPCommunicationError(StsError):
    """The token's identity provider (discovery or JWKS) could not be reached."""

    code = "IDPCommunicationError"
    public_message = "The broker could not communicate with the identity provider. Try again."


class StsIDPRejectedClaim(StsError):
    """The token is genuine but one of its claims cannot be used (e.g. malformed session tags)."""

    code = "IDPRejectedClaim"
    status = 403
    public_message = "A claim of the web identity token was rejected."


class StsAccessDenied(StsError):
    """The trust policy (or the caller's own permissions) does not allow the request."""

    code = "AccessDenied"
    status = 403
    public_message = "Not authorized to perform this operation."


class StsMalformedPolicyDocument(StsError):
    code = "MalformedPolicyDocument"
    public_message = "The session policy document is malformed."


class StsPackedPolicyTooLarge(StsError):
    code = "PackedPolicyTooLarge"
    public_message = "The session policies and session tags, packed, exceed the size limit."


class StsValidationError(StsError):
    """A parameter broke a constraint; the message names it (it is the caller's own input)."""

    code = "ValidationError"


class StsMissingParameter(StsError):
    code = "MissingParameter"


class StsInvalidParameterValue(StsError):
    code = "InvalidParameterValue"


class StsInvalidClientTokenId(StsError):
    """The access key id or the security token of a signed request is not valid."""

    code = "InvalidClientTokenId"
    status = 403
    public_message = "The security token included in the request is invalid."


class StsSignatureDoesNotMatch(StsError):
    code = "SignatureDoesNotMatch"
    status = 403
    public_message = (
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method."
    )


class StsIncompleteSignature(StsError):
    code = "IncompleteSignature"
    public_message = "The request signature does not conform to AWS standards."


class StsMissingAuthenticationToken(StsError):
    code = "MissingAuthenticationToken"
    status = 403
    public_message = "Request is missing Authentication Token"


class StsExpiredToken(StsError):
    """The security token (SessionToken) of a signed request has expired."""

    code = "ExpiredToken"
    public_message = "The security token included in the request is expired"


class StsInvalidAction(StsError):
    code = "InvalidAction"


class StsRequestEntityTooLarge(StsError):
    code = "RequestEntityTooLarge"
    status = 413
    public_message = "The request body is too large."


class StsServiceUnavailable(StsError):
    """AWS's common ``ServiceUnavailable`` (503): a failure of ours, or too busy (with
    ``retry_after``); the AWS SDKs retry it."""

    sts_type = "Receiver"
    code = "ServiceUnavailable"
    status = 503
    public_message = "The broker is unavailable. Try again later."

    def __init__(self, reason: str = "", *, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class StsInternalFailure(StsError):
    """AWS's common ``InternalFailure`` (500): an unexpected failure of ours (a bug, not a
    refusal and not overload). Not ``ServiceUnavailable``: the SDKs would retry at once what
    fails again. Rendered in the dialect of the API called (STS or IAM)."""

    sts_type = "Receiver"
    code = "InternalFailure"
    status = 500
    public_message = (
        "The request processing has failed because of an unknown error, exception or failure."
    )


# --- IAM (the AWS Query protocol, Version=2010-05-08) --------------------------------------


class IamError(StsError):
    """An error of the IAM API: AWS IAM's code and HTTP status, rendered in the same
    ``ErrorResponse`` envelope as STS (the signing errors are shared, as in AWS)."""

    code = "InvalidInput"
    status = 400


class IamNoSuchEntity(IamError):
    code = "NoSuchEntity"
    status = 404


class IamEntityAlreadyExists(IamError):
    code = "EntityAlreadyExists"
    status = 409


class IamDeleteConflict(IamError):
    """The entity is still in use (attached, has members, ...): detach first, as in AWS."""

    code = "DeleteConflict"
    status = 409


class IamLimitExceeded(IamError):
    code = "LimitExceeded"
    status = 409


class IamInvalidAuthenticationCode(IamError):
    """``EnableMFADevice`` / ``ResyncMFADevice``: the authentication codes are not valid."""

    code = "InvalidAuthenticationCode"
    status = 403
    public_message = "Authentication code for device is not valid."


class IamMalformedPolicyDocument(IamError):
    code = "MalformedPolicyDocument"


class IamInvalidInput(IamError):
    code = "InvalidInput"


class IamValidationError(IamError):
    """A parameter breaks the service model's constraints (length, pattern, range, required)."""

    code = "ValidationError"


class IamAccessDenied(IamError):
    code = "AccessDenied"
    status = 403


class IamUnmodifiableEntity(IamError):
    """Declared in the configuration file: read-only through the API."""

    code = "UnmodifiableEntity"


class IamPasswordPolicyViolation(IamError):
    """A login profile's new password breaks the broker's password rules."""

    code = "PasswordPolicyViolation"


class IamReportNotPresent(IamError):
    """GetCredentialReport before any report was generated (or after a failed generation)."""

    code = "ReportNotPresent"
    status = 410
    public_message = "Credential report not present. Use GenerateCredentialReport to create one."


class IamReportExpired(IamError):
    """The newest credential report is older than the four hours AWS keeps one fresh."""

    code = "ReportExpired"
    status = 410
    public_message = (
        "Credential report expired. Use GenerateCredentialReport to create a new report."
    )


class IamReportInProgress(IamError):
    """The credential report is still being generated."""

    code = "ReportInProgress"
    status = 404
    public_message = "Credential report is being generated. Try again shortly."


class IamServiceFailure(IamError):
    sts_type = "Receiver"
    code = "ServiceFailure"
    status = 500
    public_message = "The request processing has failed because of an unknown error."


# --- OAuth 2.0 (RFC 6749 §5.2, RFC 8693 §2.2.2, RFC 7009 §2.2.1) ---------------------------


class OAuthError(BrokerError):
    """Rendered as ``{"error": code, "error_description": public_message}``."""

    status = 400


class InvalidGrant(OAuthError):
    """RFC 6749 §5.2 ``invalid_grant``: the subject token is invalid, expired or revoked."""

    code = "invalid_grant"
    public_message = "The subject token is not valid."


class InvalidTarget(OAuthError):
    """RFC 8693 §2.2.2 ``invalid_target``: "the authorization server is unwilling or unable to
    issue a token for any target service indicated by the resource or audience parameters"."""

    code = "invalid_target"
    public_message = "A token for the requested resource cannot be issued to this subject."


class UnsupportedGrantType(OAuthError):
    """RFC 6749 §5.2 ``unsupported_grant_type``."""

    code = "unsupported_grant_type"
    public_message = "The grant type is not supported."


class InvalidClient(OAuthError):
    """RFC 6749 §5.2 ``invalid_client``: the caller did not authenticate (401)."""

    code = "invalid_client"
    status = 401
    public_message = "Authenticate with a broker credential (Authorization: Bearer)."


class UnsupportedTokenType(OAuthError):
    """RFC 7009 §2.2.1 ``unsupported_token_type``."""

    code = "unsupported_token_type"
    public_message = "Tokens of this type cannot be revoked here."


class InvalidScope(OAuthError):
    """RFC 6749 §5.2 ``invalid_scope``: a scope the broker does not know (only ``role:<name>``)."""

    code = "invalid_scope"
    public_message = "The requested scope is invalid; name a role as scope=role:<name>."


class TemporarilyUnavailable(OAuthError):
    """RFC 6749 §4.1.2.1 ``temporarily_unavailable``: the identity provider or store is down."""

    code = "temporarily_unavailable"
    status = 503
    public_message = "The broker cannot complete the request now; try again later."

    def __init__(self, reason: str = "", *, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


# --- RFC 8628 §3.5: the device grant's polling answers ------------------------------------


class AuthorizationPending(OAuthError):
    code = "authorization_pending"
    public_message = "The user has not approved this request yet."


class SlowDown(OAuthError):
    code = "slow_down"
    public_message = "Polling too fast: wait 5 seconds more between requests."


class ExpiredDeviceCode(OAuthError):
    code = "expired_token"
    public_message = "The device code has expired; start again."


class OAuthAccessDenied(OAuthError):
    """RFC 6749 §4.1.2.1 / RFC 8628 §3.5 ``access_denied``: the user said no."""

    code = "access_denied"
    public_message = "The request was denied."
