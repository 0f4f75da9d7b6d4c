"""Drive a browser-style login through an OpenID Connect provider with plain HTTP.

:func:`follow_login` GETs a start URL (the broker's login URL, or a provider authorization URL),
follows every redirect by hand (so the chain is recorded), fills and POSTs the provider's HTML
login form (inputs ``login`` / ``password``) and submits consent forms as they are, then keeps
following redirects once the flow has left the provider, until a response that is not a redirect.

The session MUST be created with an unsafe cookie jar, or cookies set by ``127.0.0.1`` hosts are
dropped and the provider's interaction cookies never come back::

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        result = await follow_login(session, login_url, username="alice", password="...")
        assert result.left_provider and result.status == 200

Cookies do not isolate by port: the provider's cookies (named ``op-<provider>-*``) and the
broker's share one jar for ``127.0.0.1``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import urlencode, urljoin, urlsplit

import aiohttp

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class LoginDriverError(AssertionError):
    """The login did not converge (too many steps, or a form that cannot be driven)."""


@dataclass(frozen=True)
class Step:
    method: str
    url: str
    status: int
    location: str | None = None

    def __iter__(self) -> Iterator[str | int]:
        """Unpack as ``(method, url, status)``."""
        return iter((self.method, self.url, self.status))


@dataclass
class HtmlForm:
    action: str
    method: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    field_types: dict[str, str] = field(default_factory=dict)
    submit: tuple[str, str] | None = None
    form_id: str | None = None

    @property
    def has_password(self) -> bool:
        return "password" in self.field_types.values()

    def names(self) -> set[str]:
        return {name for name, _ in self.fields}


class _FormParser(HTMLParser):
    """Collect every <form> with its inputs (hidden ones included), selects and textareas."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[HtmlForm] = []
        self._form: HtmlForm | None = None
        self._select: str | None = None
        self._select_value: str | None = None
        self._select_first: str | None = None
        self._option_value: str | None = None
        self._option_text: list[str] | None = None
        self._option_selected = False
        self._textarea: str | None = None
        self._textarea_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "form":
            self._form = HtmlForm(
                action=a.get("action", ""),
                method=(a.get("method") or "get").upper(),
                form_id=a.get("id"),
            )
            self.forms.append(self._form)
            return
        form = self._form
        if form is None:
            return
        name = a.get("name")
        if tag == "input":
            kind = (a.get("type") or "text").lower()
            if kind in ("submit", "image"):
                if form.submit is None and name:
                    form.submit = (name, a.get("value", ""))
                return
            if kind in ("button", "reset", "file") or not name or "disabled" in a:
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            form.fields.append((name, a.get("value", "on" if kind == "checkbox" else "")))
            form.field_types[name] = kind
        elif tag == "button":
            kind = (a.get("type") or "submit").lower()
            if kind == "submit" and form.submit is None and name:
                form.submit = (name, a.get("value", ""))
        elif tag == "select" and name:
            self._select, self._select_value, self._select_first = name, None, None
        elif tag == "option" and self._select is not None:
            self._option_value = a.get("value")
            self._option_text = []
            self._option_selected = "selected" in a
        elif tag == "textarea" and name:
            self._textarea, self._textarea_text = name, []

    def handle_data(self, data: str) -> None:
        if self._option_text is not None:
            self._option_text.append(data)
        if self._textarea is not None:
            self._textarea_text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "option":
            self._end_option()
        elif tag == "select" and self._select is not None:
            self._end_option()
            value = self._select_value if self._select_value is not None else self._select_first
            if self._form is not None and value is not None:
                self._form.fields.append((self._select, value))
                self._form.field_types[self._select] = "select"
            self._select = None
        elif tag == "textarea" and self._textarea is not None:
            if self._form is not None:
                self._form.fields.append((self._textarea, "".join(self._textarea_text)))
                self._form.field_types[self._textarea] = "textarea"
            self._textarea = None
        elif tag == "form":
            self._form = None

    def _end_option(self) -> None:
        if self._option_text is None:
            return
        value = (
            self._option_value
            if self._option_value is not None
            else "".join(self._option_text).strip()
        )
        if self._select_first is None:
            self._select_first = value
        if self._option_selected:
            self._select_value = value
        self._option_text = None


def parse_forms(html: str) -> list[HtmlForm]:
    parser = _FormParser()
    parser.feed(html)
    parser.close()
    return parser.forms


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass
class LoginResult:
    """Where the flow ended. ``chain`` holds every request made, in order."""

    chain: list[Step]
    url: str
    status: int
    text: str
    headers: dict[str, str]
    provider_origins: set[str]
    submitted_login: bool = False
    login_failed: bool = False

    @property
    def left_provider(self) -> bool:
        """True when the final response came from outside the provider (the relying party)."""
        return origin(self.url) not in self.provider_origins

    @property
    def steps(self) -> list[tuple[str, str, int]]:
        return [(s.method, s.url, s.status) for s in self.chain]

    def first_url_matching(self, prefix: str) -> str | None:
        """The first URL in the chain starting with ``prefix`` (e.g. the RP callback)."""
        return next((s.url for s in self.chain if s.url.startswith(prefix)), None)


def _looks_html(resp: aiohttp.ClientResponse) -> bool:
    return resp.content_type in ("text/html", "application/xhtml+xml")


async def follow_login(
    session: aiohttp.ClientSession,
    start_url: str,
    *,
    username: str,
    password: str,
    max_steps: int = 20,
    provider_origins: Iterable[str] | None = None,
    stop_at_rp: bool = False,
) -> LoginResult:
    """Follow ``start_url`` through the provider's login (and consent) forms and back.

    Redirects are followed by hand and recorded. A page that holds a form with a password input
    on a provider origin is the login page and is POSTed with ``login``/``password`` filled.
    Provider origins are ``provider_origins`` when given (issuer URLs will do); otherwise any
    origin that serves a password form is taken for the provider. Other forms on a
    provider origin (consent) are submitted as they are. Forms outside the provider are never
    submitted: the first non-redirect response there ends the walk. If the login form comes back
    after the credentials were posted, the walk stops there with ``login_failed=True``.

    With ``stop_at_rp=True`` the walk ends at the first redirect from a provider origin to
    another origin, without requesting it: ``result.url`` is then the relying party's callback
    URL (code, state, iss unspent), ``result.status`` the redirect's status and ``text`` empty.
    Handy to replay or tamper with a callback.

    Raises :class:`LoginDriverError` after ``max_steps`` requests.
    """
    discover = provider_origins is None
    providers = {origin(u) for u in provider_origins or ()}
    chain: list[Step] = []
    method, url = "GET", start_url
    data: dict[str, str] | list[tuple[str, str]] | None = None
    submitted_login = False
    for _ in range(max_steps):
        async with session.request(method, url, data=data, allow_redirects=False) as resp:
            location = resp.headers.get("Location")
            chain.append(Step(method, url, resp.status, location))
            if resp.status in REDIRECT_STATUSES and location:
                target = urljoin(url, location)
                if stop_at_rp and origin(url) in providers and origin(target) not in providers:
                    return LoginResult(
                        chain=chain,
                        url=target,
                        status=resp.status,
                        text="",
                        headers=dict(resp.headers),
                        provider_origins=providers,
                        submitted_login=submitted_login,
                    )
                if resp.status not in (307, 308):
                    method, data = "GET", None
                url = target
                continue
            text = await resp.text(errors="replace")
            headers = dict(resp.headers)
            status = resp.status
            is_html = _looks_html(resp)
        forms = parse_forms(text) if is_html else []
        login_form = next((f for f in forms if f.has_password), None)
        here = origin(url)
        if login_form is not None and discover:
            providers.add(here)
        result = LoginResult(
            chain=chain,
            url=url,
            status=status,
            text=text,
            headers=headers,
            provider_origins=providers,
            submitted_login=submitted_login,
        )
        if here not in providers or not forms:
            return result
        if login_form is not None:
            if submitted_login:
                result.login_failed = True
                return result
            form = login_form
            values = [(k, v) for k, v in form.fields if k not in ("login", "password")]
            values += [("login", username), ("password", password)]
            submitted_login = True
        else:
            form = forms[0]
            values = list(form.fields)
        if form.submit is not None:
            values.append(form.submit)
        target = urljoin(url, form.action or url)
        if form.method == "GET":
            sep = "&" if urlsplit(target).query else "?"
            method, url, data = "GET", f"{target}{sep}{urlencode(values)}", None
        else:
            method, url, data = "POST", target, values
    raise LoginDriverError(
        f"login did not finish within {max_steps} requests: "
        + " -> ".join(f"{s.method} {s.url} [{s.status}]" for s in chain)
    )
