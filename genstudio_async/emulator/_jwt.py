"""Prompt tokens: JWTs (HS256) like the service's ``prompt_token``, signed with a per-emulator secret.

The claims are the service's: ``tenant_id``, ``task_id``, ``iss`` ("infini") and ``exp`` (Unix seconds).
Only what the emulator needs is implemented: HS256, compact form, no other algorithm is ever accepted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

_HEADER = {"alg": "HS256", "typ": "JWT"}


class TokenError(ValueError):
    """A token that is malformed, forged, expired, or not for this emulator."""


@dataclass(frozen=True)
class TokenClaims:
    """The claims of a valid prompt token."""

    tenant_id: str
    task_id: str
    issuer: str
    expires_at: int


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise TokenError("token segment is not base64url") from exc


def _compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


class TokenSigner:
    """Mints and checks prompt tokens with one HMAC secret."""

    def __init__(self, secret: bytes, *, issuer: str) -> None:
        self._secret = secret
        self._issuer = issuer

    def mint(self, *, tenant_id: str, task_id: str, expires_at: int) -> str:
        """A signed token for ``task_id`` that expires at Unix time ``expires_at``."""
        claims = {"tenant_id": tenant_id, "task_id": task_id, "iss": self._issuer, "exp": expires_at}
        signing_input = f"{_b64encode(_compact(_HEADER))}.{_b64encode(_compact(claims))}"
        return f"{signing_input}.{self._signature(signing_input)}"

    def verify(self, token: str, *, now: float) -> TokenClaims:
        """The claims of ``token``, or ``TokenError`` saying why it is refused."""
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("token is not a compact JWT")
        header_b64, claims_b64, signature = parts
        try:
            header = json.loads(_b64decode(header_b64))
            claims = json.loads(_b64decode(claims_b64))
        except ValueError as exc:
            raise TokenError("token segment is not JSON") from exc
        if not isinstance(header, dict) or header.get("alg") != "HS256":
            raise TokenError("token algorithm is not HS256")
        expected = self._signature(f"{header_b64}.{claims_b64}")
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace")):
            raise TokenError("token signature does not match")
        if not isinstance(claims, dict):
            raise TokenError("token claims are not an object")
        exp = claims.get("exp")
        task_id = claims.get("task_id")
        tenant_id = claims.get("tenant_id")
        if not isinstance(exp, int) or isinstance(exp, bool):
            raise TokenError("token has no exp")
        if now >= exp:
            raise TokenError("token has expired")
        if claims.get("iss") != self._issuer:
            raise TokenError("token issuer is wrong")
        if not isinstance(task_id, str) or not isinstance(tenant_id, str):
            raise TokenError("token has no task_id or tenant_id")
        return TokenClaims(tenant_id=tenant_id, task_id=task_id, issuer=self._issuer, expires_at=exp)

    def _signature(self, signing_input: str) -> str:
        digest = hmac.new(self._secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        return _b64encode(digest)
