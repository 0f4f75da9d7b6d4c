"""Cookie names and attributes: HttpOnly, SameSite=Lax, and Secure + ``__Host-`` on https.

With ``[session] cookie_domain`` set, the session cookie carries ``Domain=`` so that apps on
sibling hosts behind forward-auth receive it; its prefix is then ``__Secure-`` (``__Host-``
forbids a domain). The other cookies stay host-only.
"""

from __future__ import annotations

from aiohttp import web

from broker.config import Settings

LOGIN_COOKIE = "broker_login"  # binds a pending authorization-code flow to this browser
PENDING_COOKIE = "broker_pending"  # identity waiting for a role choice
PASSWORD_COOKIE = "broker_password"  # local user who must set a new password
MFA_COOKIE = "broker_mfa"  # local user whose password was right, waiting to give an MFA code
MFA_ENROL_COOKIE = "broker_mfa_enrol"  # an MFA device being enrolled from the session page
# binds pre-login forms and every single-use value of a login flow to this browser
BROWSER_COOKIE = "broker_csrf"


class Cookies:
    def __init__(self, settings: Settings) -> None:
        self.secure = settings.server.secure
        self._prefix = "__Host-" if self.secure else ""
        self.domain = settings.session.cookie_domain or None
        session_prefix = "__Secure-" if self.secure and self.domain else self._prefix
        self.session = session_prefix + settings.session.cookie_name
        self.login = self._prefix + LOGIN_COOKIE
        self.pending = self._prefix + PENDING_COOKIE
        self.password = self._prefix + PASSWORD_COOKIE
        self.mfa = self._prefix + MFA_COOKIE
        self.mfa_enrol = self._prefix + MFA_ENROL_COOKIE
        self.browser = self._prefix + BROWSER_COOKIE

    def set(self, resp: web.StreamResponse, name: str, value: str, *, max_age: float) -> None:
        resp.set_cookie(
            name,
            value,
            max_age=int(max_age),
            path="/",
            domain=self.domain if name == self.session else None,
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )

    def clear(self, resp: web.StreamResponse, name: str) -> None:
        resp.del_cookie(
            name,
            path="/",
            domain=self.domain if name == self.session else None,
            secure=self.secure,
            httponly=True,
            samesite="Lax",
        )
