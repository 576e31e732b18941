"""Signed result URLs in the shape of Aliyun OSS's (signature version 1), on the emulator's storage origin.

A URL looks like the service's::

    http://127.0.0.1:PORT/te-emulator%2Fac-emulator%2Fcft-…%2F<uuid>.png?Expires=<unix>&OSSAccessKeyId=<id>&Signature=<sig>

The object key keeps its slashes percent-encoded (``%2F``) and the signature is base64 of an HMAC-SHA1,
percent-encoded with ``quote(safe="")``, so it often holds ``%2B``, ``%2F`` and ``%3D``. A client that
percent-decodes the URL turns ``%2B`` into ``+``, which the storage reads back as a space: the signature
no longer matches and the download is refused with 403, exactly as OSS does. To make that trap fire every
time rather than on about a third of URLs, the signer nudges ``Expires`` forward by a few seconds until the
signature holds a ``+`` (see ``EMULATOR_SIGNATURE_PLUS_SEARCH``).

The signed string is OSS's: ``GET\\n\\n\\n{Expires}\\n/{bucket}/{key}`` plus ``?x-oss-process=…`` when an image
post-process command is asked for, so that parameter is covered by the signature too.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

PROCESS_PARAM = "x-oss-process"


@dataclass(frozen=True)
class SignatureRejected(Exception):
    """Why the storage refuses a signed request: an OSS error ``code`` and ``message``."""

    code: str
    message: str


class UrlSigner:
    """Mints and checks signed URLs for objects of one bucket on one storage origin."""

    def __init__(
        self,
        secret: bytes,
        *,
        access_key_id: str,
        bucket: str,
        storage_origin: str,
        plus_search: int,
    ) -> None:
        self._secret = secret
        self._access_key_id = access_key_id
        self._bucket = bucket
        self._origin = storage_origin.rstrip("/")
        self._plus_search = max(1, plus_search)

    def sign_url(self, object_key: str, *, expires_at: int, process: str | None = None) -> str:
        """A URL for ``object_key`` valid until ``expires_at`` (possibly a few seconds later, see above)."""
        expires, signature = expires_at, self._signature(object_key, expires_at, process)
        for nudge in range(1, self._plus_search):
            if "+" in signature:
                break
            candidate = self._signature(object_key, expires_at + nudge, process)
            if "+" in candidate:
                expires, signature = expires_at + nudge, candidate
                break
        params = {"Expires": str(expires), "OSSAccessKeyId": self._access_key_id, "Signature": signature}
        if process:
            params[PROCESS_PARAM] = process
        # As Aliyun's OSS SDK builds it: keys sorted (hence Expires, OSSAccessKeyId, Signature, x-oss-process),
        # every value query-escaped (image/format,jpg -> image%2Fformat%2Cjpg).
        query = "&".join(f"{name}={quote(value, safe='')}" for name, value in sorted(params.items()))
        return f"{self._origin}/{quote(object_key, safe='')}?{query}"

    def verify(self, object_key: str, params: Mapping[str, str], *, now: float) -> None:
        """Check a request's query ``params`` for ``object_key``; raise ``SignatureRejected`` if refused."""
        expires_text = params.get("Expires")
        access_key_id = params.get("OSSAccessKeyId")
        signature = params.get("Signature")
        if expires_text is None or access_key_id is None or signature is None:
            raise SignatureRejected("AccessDenied", "Anonymous access is forbidden for this operation.")
        if access_key_id != self._access_key_id:
            raise SignatureRejected("InvalidAccessKeyId", "The OSS Access Key Id you provided does not exist.")
        try:
            expires = int(expires_text)
        except ValueError:
            raise SignatureRejected("AccessDenied", "Invalid Expires.") from None
        expected = self._signature(object_key, expires, params.get(PROCESS_PARAM))
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8")):
            raise SignatureRejected(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if now > expires:
            raise SignatureRejected("AccessDenied", "Request has expired.")

    def _signature(self, object_key: str, expires: int, process: str | None) -> str:
        resource = f"/{self._bucket}/{object_key}"
        if process:
            resource += f"?{PROCESS_PARAM}={process}"
        string_to_sign = f"GET\n\n\n{expires}\n{resource}"
        digest = hmac.new(self._secret, string_to_sign.encode("utf-8"), hashlib.sha1).digest()
        return base64.b64encode(digest).decode("ascii")
