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
post-process command is asked for, so that parameter is covered by the signature too. A pre-signed upload
(GPUGeek's) signs ``PUT\\n\\n{Content-Type}\\n{Expires}\\n/{bucket}/{key}``: a PUT with another
``Content-Type`` is refused, as OSS refuses it. With ``keep_slashes`` the key's slashes stay slashes in the URL
(``/comfy/input/x.png``, GPUGeek's shape) instead of ``%2F``.
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
class _Signed:
    """What a signature covers besides the key and the expiry: the method, a PUT's Content-Type, the process."""

    method: str
    content_type: str
    process: str | None


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
        keep_slashes: bool = False,
    ) -> None:
        self._secret = secret
        self._access_key_id = access_key_id
        self._bucket = bucket
        self._origin = storage_origin.rstrip("/")
        self._plus_search = max(1, plus_search)
        self._path_safe = "/" if keep_slashes else ""

    @property
    def origin(self) -> str:
        """The storage origin the URLs point at, ``http://host:port``."""
        return self._origin

    def object_url(self, object_key: str) -> str:
        """The object's own URL, with no query (what a GPUGeek upload is committed as)."""
        return f"{self._origin}/{quote(object_key, safe=self._path_safe)}"

    def sign_url(
        self,
        object_key: str,
        *,
        expires_at: int,
        process: str | None = None,
        method: str = "GET",
        content_type: str = "",
    ) -> str:
        """A URL for ``method`` on ``object_key`` valid until ``expires_at`` (possibly a few seconds later, see
        above); a PUT must then send ``content_type``."""
        request = _Signed(method, content_type, process)
        expires, signature = expires_at, self._signature(object_key, expires_at, request)
        for nudge in range(1, self._plus_search):
            if "+" in signature:
                break
            candidate = self._signature(object_key, expires_at + nudge, request)
            if "+" in candidate:
                expires, signature = expires_at + nudge, candidate
                break
        params = {"Expires": str(expires), "OSSAccessKeyId": self._access_key_id, "Signature": signature}
        if process:
            params[PROCESS_PARAM] = process
        # As Aliyun's OSS SDK builds it: keys sorted (hence Expires, OSSAccessKeyId, Signature, x-oss-process),
        # every value query-escaped (image/format,jpg -> image%2Fformat%2Cjpg).
        query = "&".join(f"{name}={quote(value, safe='')}" for name, value in sorted(params.items()))
        return f"{self.object_url(object_key)}?{query}"

    def verify(
        self, object_key: str, params: Mapping[str, str], *, now: float, method: str = "GET", content_type: str = ""
    ) -> None:
        """Check a ``method`` request's query ``params`` (and, for a PUT, its ``content_type``) for
        ``object_key``; raise ``SignatureRejected`` if refused."""
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
        expected = self._signature(object_key, expires, _Signed(method, content_type, params.get(PROCESS_PARAM)))
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8")):
            raise SignatureRejected(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if now > expires:
            raise SignatureRejected("AccessDenied", "Request has expired.")

    def _signature(self, object_key: str, expires: int, request: _Signed) -> str:
        resource = f"/{self._bucket}/{object_key}"
        if request.process:
            resource += f"?{PROCESS_PARAM}={request.process}"
        string_to_sign = f"{request.method}\n\n{request.content_type}\n{expires}\n{resource}"
        digest = hmac.new(self._secret, string_to_sign.encode("utf-8"), hashlib.sha1).digest()
        return base64.b64encode(digest).decode("ascii")
