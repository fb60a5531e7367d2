"""Short-lived bearer tokens: JWTs signed HS256 with pyjwt.

Expiry is checked against the app's injected clock (not pyjwt's wall clock), so tests can move
time; the signature, algorithm and required claims are pyjwt's to check.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import jwt

ALGORITHM = "HS256"
ISSUER = "giamsat"
MIN_KEY_BYTES = 32  # RFC 7518 §3.2: an HS256 key at least as long as the hash output


class TokenInvalid(Exception):
    """A bearer token that is malformed, badly signed or expired; the message says which."""


class Tokens:
    """Issues and verifies the API's bearer tokens."""

    def __init__(self, key: str, ttl_s: int, clock: Callable[[], datetime]):
        if len(key.encode()) < MIN_KEY_BYTES:
            raise ValueError(f"the token signing key must be at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self.ttl_s = ttl_s
        self._clock = clock

    def issue(self, username: str, role: str) -> str:
        """A token for ``username`` valid for ``ttl_s`` seconds from now."""
        now = int(self._clock().timestamp())
        claims = {"sub": username, "role": role, "iss": ISSUER, "iat": now,
                  "exp": now + self.ttl_s}
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def expiry(self, token: str) -> int:
        """When a token verified by ``verify`` runs out, UTC epoch seconds."""
        claims = jwt.decode(token, self._key, algorithms=[ALGORITHM], issuer=ISSUER,
                            options={"verify_exp": False, "verify_iat": False})
        return int(claims["exp"])

    def verify(self, token: str) -> str:
        """The username the token was issued to; raise TokenInvalid otherwise."""
        try:
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM], issuer=ISSUER,
                                options={"require": ["sub", "exp", "iat"], "verify_exp": False,
                                         "verify_iat": False})
        except jwt.InvalidTokenError as exc:
            raise TokenInvalid(f"invalid token: {exc}") from exc
        if not isinstance(claims["exp"], int) or claims["exp"] <= self._clock().timestamp():
            raise TokenInvalid("token expired")
        return str(claims["sub"])
