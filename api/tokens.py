"""Short-lived bearer tokens: JWTs signed HS256 with pyjwt.

A token lives ``ttl_s``; the dashboard exchanges a still-valid one for a fresh one while the
officer is at work (``POST /api/v1/auth/refresh``), up to ``session_max_s`` after the password
was given (the ``auth_time`` claim, carried over unchanged by every refresh). An unattended
screen therefore locks after ``ttl_s``, and a shift ends with a new sign-in.

Expiry is checked against the app's injected clock (not pyjwt's wall clock), so tests can move
time; the signature, algorithm and required claims are pyjwt's to check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import jwt

ALGORITHM = "HS256"
ISSUER = "giamsat"
MIN_KEY_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash output


class TokenInvalid(Exception):
    """A bearer token that is malformed, badly signed or expired. The message is one of two
    fixed texts (``invalid token``, ``token expired``) fit for a 401 answer; the library's
    own words, which would tell a prober how a forgery failed, stay in ``reason`` for logs."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


@dataclass(frozen=True)
class Claims:
    """What a verified token says: who, since when signed in, until when valid (epoch s)."""

    username: str
    auth_time: int
    expires_at: int
    password_version: int | None  # the officer's password_version at sign-in (None: not said)


class Tokens:
    """Issues, verifies and refreshes the API's bearer tokens."""

    def __init__(self, key: str, ttl_s: int, clock: Callable[[], datetime],
                 session_max_s: int | None = None):
        if len(key.encode()) < MIN_KEY_BYTES:
            raise ValueError(f"the token signing key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self.ttl_s = ttl_s
        self.session_max_s = max(ttl_s, session_max_s or ttl_s)
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock().timestamp())

    def issue(self, username: str, role: str, auth_time: int | None = None,
              password_version: int | None = None) -> str:
        """A token for ``username`` valid for ``ttl_s`` seconds from now, never past
        ``session_max_s`` after ``auth_time`` (the sign-in; now when None). With
        ``password_version`` the token dies when the password changes."""
        now = self._now()
        auth_time = now if auth_time is None else auth_time
        claims: dict[str, object] = {
            "sub": username, "role": role, "iss": ISSUER, "iat": now, "auth_time": auth_time,
            "exp": min(now + self.ttl_s, auth_time + self.session_max_s)}
        if password_version is not None:
            claims["pwv"] = password_version
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def peek(self, token: str) -> Claims:
        """The claims of a well-signed token, expired or not; raise TokenInvalid otherwise.

        A token issued before ``auth_time`` existed counts as signed in at its ``iat``.
        """
        try:
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"require": ["sub", "exp", "iat"], "verify_exp": False,
                                         "verify_iat": False})
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid("invalid token", f"{type(exc).__name__}: {exc}") from exc
        exp, iat = claims["exp"], claims["iat"]
        auth_time, pwv = claims.get("auth_time", iat), claims.get("pwv")
        if not all(isinstance(v, int) for v in (exp, iat, auth_time)) or not (
                pwv is None or isinstance(pwv, int)):
            raise TokenInvalid("invalid token", "exp, iat, auth_time and pwv must be integers")
        return Claims(str(claims["sub"]), auth_time, exp, pwv)

    def claims(self, token: str) -> Claims:
        """The claims of a valid, unexpired token; raise TokenInvalid otherwise."""
        claims = self.peek(token)
        if claims.expires_at <= self._now():
            raise TokenInvalid("token expired")
        return claims

    def session_left_s(self, claims: Claims) -> int:
        """Seconds until this sign-in can no longer be refreshed."""
        return claims.auth_time + self.session_max_s - self._now()
