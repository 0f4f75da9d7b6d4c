"""TOTP (RFC 6238) checks for virtual MFA devices, on ``pyotp``; QR codes on ``segno``.

Codes are 6 digits over 30-second time steps, HMAC-SHA1 (what authenticator apps and AWS use).
A code is looked for in the current step and one step either side (RFC 6238 §5.2's
recommended network delay allowance) and compared with ``hmac.compare_digest`` against every
candidate, without stopping at the first match, so the time taken says nothing about which
step (if any) matched. These functions only *find* the step a code belongs to; that it is used
once is the store's compare-and-set on the device's ``last_step``.

QR codes are drawn here (SVG for the enrolment page, PNG for ``CreateVirtualMFADevice``):
the seed never leaves the broker for a third-party renderer, and the page needs no script.
"""

from __future__ import annotations

import hmac
import io

import pyotp
import segno

STEP_SECONDS = 30
DIGITS = 6
WINDOW = 1  # steps accepted either side of the current one
SEED_LENGTH = 32  # Base32 characters: 160 bits, RFC 4226 §4's recommended key length


def new_seed() -> str:
    """A fresh random Base32 seed (``secrets``-backed)."""
    return pyotp.random_base32(SEED_LENGTH)


def time_step(now: float) -> int:
    return int(now // STEP_SECONDS)


def is_code(text: str) -> bool:
    """Six ASCII digits: the form of every code (anything else is refused before any check)."""
    return len(text) == DIGITS and text.isascii() and text.isdigit()


def _code_at(totp: pyotp.TOTP, step: int) -> bytes:
    return totp.at(step * STEP_SECONDS).encode("ascii")


def matching_step(seed: str, code: str, *, now: float, after: int) -> int | None:
    """The latest step within the window whose code is ``code`` and which is above ``after``
    (the device's last accepted step), or None. A code of a step already used is refused."""
    if not is_code(code):
        return None
    totp = pyotp.TOTP(seed, digits=DIGITS, interval=STEP_SECONDS)
    given = code.encode("ascii")
    current = time_step(now)
    found: int | None = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        if hmac.compare_digest(_code_at(totp, step), given) and step > after:
            found = step
    return found


def consecutive_steps(seed: str, first: str, second: str, *, now: float, after: int) -> int | None:
    """For enabling or resynchronising a device: ``first`` and ``second`` are the codes of two
    consecutive steps, the second within the window and both above ``after``. Returns the
    second's step (to record as the last used), or None."""
    if not (is_code(first) and is_code(second)):
        return None
    totp = pyotp.TOTP(seed, digits=DIGITS, interval=STEP_SECONDS)
    a, b = first.encode("ascii"), second.encode("ascii")
    current = time_step(now)
    found: int | None = None
    for step in range(current - WINDOW, current + WINDOW + 1):
        ok_first = hmac.compare_digest(_code_at(totp, step - 1), a)
        ok_second = hmac.compare_digest(_code_at(totp, step), b)
        if ok_first and ok_second and step - 1 > after:
            found = step
    return found


def provisioning_uri(seed: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://totp/...`` URI authenticator apps read from the QR code."""
    return pyotp.TOTP(seed, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """An inline ``<svg>`` (no XML declaration, no style attribute: fine under a strict CSP)."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(
        out, kind="svg", xmldecl=False, svgns=True, nl=False, scale=4, light="#fff", title=None
    )
    return out.getvalue().decode("ascii")


def qr_png(uri: str) -> bytes:
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="png", scale=4)
    return out.getvalue()
