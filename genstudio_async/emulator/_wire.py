"""JSON as the real services write it, their response envelopes, and the HTML page of a proxy in front of them.

The service's encoder escapes ``&`` (and ``<``, ``>``) inside strings as ``\\u0026`` (``\\u003c``, ``\\u003e``),
so a signed URL arrives as ``...png?Expires=1\\u0026OSSAccessKeyId=...``. A JSON parser turns it back into
``&``; a client that greps the raw text does not. The emulator writes every HTTP body and WebSocket frame
through ``dumps`` so clients meet the same text.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from starlette.responses import Response

# Business codes of the envelope (``code``). 0 is success; HTTP-level errors reuse their HTTP status.
CODE_OK = 0
CODE_BAD_REQUEST = 400
CODE_UNAUTHORIZED = 401
CODE_NOT_FOUND = 404
CODE_METHOD_NOT_ALLOWED = 405
CODE_PAYLOAD_TOO_LARGE = 413
CODE_RATE_LIMITED = 429
CODE_INVALID_PARAMETER = 10001
CODE_WORKFLOW_NOT_FOUND = 10002
CODE_TASK_NOT_FOUND = 10003
CODE_INVALID_PROMPT = 10004

_ESCAPES = (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"))


def dumps(value: Any) -> str:
    """Compact JSON with ``&``, ``<``, ``>`` escaped as the service's encoder does.

    The replacement is safe on the whole text: these characters can only occur inside JSON strings, and
    never right after an escaping backslash.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in _ESCAPES:
        if char in text:
            text = text.replace(char, escape)
    return text


def new_traceid() -> str:
    """A random trace id, as every error envelope carries."""
    return secrets.token_hex(16)


def json_response(payload: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A response whose body is ``dumps(payload)``."""
    return Response(
        content=dumps(payload).encode("utf-8"),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


@dataclass(frozen=True)
class Envelope:
    """One service's response envelope: ``{"code", <message_field>, "data", "traceid"}``.

    GenStudio writes ``{"code": 0, "msg": "Success", "data": ...}`` and a ``traceid`` on errors only; GPUGeek
    writes ``{"code": 0, "message": "success", "traceid": ..., "data": ...}``, a ``traceid`` every time.
    """

    message_field: str
    success_message: str
    traceid_on_success: bool

    def ok(self, data: Any) -> Response:
        """The success envelope around ``data``."""
        payload: dict[str, Any] = {"code": CODE_OK, self.message_field: self.success_message}
        if self.traceid_on_success:
            payload["traceid"] = new_traceid()
        payload["data"] = data
        return json_response(payload)

    def error_payload(self, code: int, message: str, data: Any = None) -> dict[str, Any]:
        """An error envelope: ``code != 0``, a message naming the field or id, and a fresh ``traceid``."""
        return {"code": code, self.message_field: message, "data": data, "traceid": new_traceid()}

    def error(
        self,
        code: int,
        message: str,
        *,
        status_code: int = 200,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """An error response. Business errors keep HTTP 200 (as the services do); others pass their status."""
        return json_response(self.error_payload(code, message, data), status_code=status_code, headers=headers)


GENSTUDIO_ENVELOPE = Envelope(message_field="msg", success_message="Success", traceid_on_success=False)
GPUGEEK_ENVELOPE = Envelope(message_field="message", success_message="success", traceid_on_success=True)


#: GenStudio's envelope, as plain functions (its layer's modules and the progress socket's refusals use them).
ok = GENSTUDIO_ENVELOPE.ok
error = GENSTUDIO_ENVELOPE.error
error_envelope = GENSTUDIO_ENVELOPE.error_payload


def html_error_page(status_code: int, headers: dict[str, str] | None = None) -> Response:
    """The page nginx answers with when what is behind it fails: ``text/html``, no envelope (``http_error_html``)."""
    try:
        title = f"{status_code} {HTTPStatus(status_code).phrase}"
    except ValueError:
        title = str(status_code)
    page = (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )
    return Response(content=page.encode("ascii"), status_code=status_code, media_type="text/html", headers=headers)
