"""Shared fixtures: a client bound to a respx mock, a recorded (never real) retry sleep, and JWT building.

Nothing here touches the network or the wall clock: respx answers every request, and the retry sleep of
``genstudio_async._http`` is replaced (for every test) by one that only records how long it was asked to wait.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import respx

from genstudio_async import AsyncGenStudio, _http
from genstudio_async import _logs as L
from genstudio_async._services import genstudio as GS

# The SDK's own pytest plugin: the `genstudio_emulator` fixture runs a real emulator on 127.0.0.1.
pytest_plugins = ["genstudio_async.testing"]

BASE_URL = "https://genstudio.test"
API_KEY = "sk-test-7f3a9c2e5b8d1f4a6c0e9b7d"


def encode_jwt(claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """A JWT built by hand: base64url(header).base64url(claims).signature, padding stripped. Never verified."""

    def part(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part(header or {'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJlLW5vdC1jaGVja2Vk"


# The guide's img2img "任务成功" answer, byte for byte as the service sends it: the `&` of each files URL arrives
# JSON-escaped as \u0026, the object key is percent-encoded (%2F) and the signature holds %2B and %3D.
_GUIDE_SUCCESS_JSON = r"""
{
    "code": 0,
    "msg": "Success",
    "data": {
        "comfy_task_info": [
            {
                "comfy_task_id": "cft-c73e5ci6dwb5wfhl",
                "status": 3,
                "queue_size": 0,
                "current_position": 0,
                "errMsg": "",
                "files": {
                    "9": [
                        "https://infini-imagegen.oss-cn-beijing.aliyuncs.com/te-b905754427352261%2Fac-c66h4ddlwutmbinv%2Fcft-c73e5ci6dwb5wfhl%2F4e066af5-79df-40ab-8a2d-57012b3f94b3.png?Expires=1726654989\u0026OSSAccessKeyId=LTAI5tBgzFapTV38XHKZjHPa\u0026Signature=28hPa004ivIW4WX%2BpueVTvQcLXw%3D"
                    ]
                },
                "final_files": [
                    "https://infini-imagegen.oss-cn-beijing.aliyuncs.com/te-b905754427352261%2Fac-c66h4ddlwutmbinv%2Fcft-c76ujyezgep5pcal%2F83f2227c-9c1a-4e6a-813b-1359e2d1867e.png?Expires=1728615208&OSSAccessKeyId=LTAI5tBgzFapTV38XHKZjHPa&Signature=V1XbMwpAYXBt8eD1FN690kKcnVk%3D"
                ],
                "progress_num": 100
            }
        ]
    }
}
"""
_GUIDE_FILE_URL = (
    "https://infini-imagegen.oss-cn-beijing.aliyuncs.com/te-b905754427352261%2Fac-c66h4ddlwutmbinv"
    "%2Fcft-c73e5ci6dwb5wfhl%2F4e066af5-79df-40ab-8a2d-57012b3f94b3.png?Expires=1726654989"
    "&OSSAccessKeyId=LTAI5tBgzFapTV38XHKZjHPa&Signature=28hPa004ivIW4WX%2BpueVTvQcLXw%3D"
)
_GUIDE_FINAL_URL = (
    "https://infini-imagegen.oss-cn-beijing.aliyuncs.com/te-b905754427352261%2Fac-c66h4ddlwutmbinv"
    "%2Fcft-c76ujyezgep5pcal%2F83f2227c-9c1a-4e6a-813b-1359e2d1867e.png?Expires=1728615208"
    "&OSSAccessKeyId=LTAI5tBgzFapTV38XHKZjHPa&Signature=V1XbMwpAYXBt8eD1FN690kKcnVk%3D"
)


@pytest.fixture
def guide_success() -> dict[str, str]:
    """The guide's own success answer as raw JSON text (``raw``) and the two URLs it must parse to."""
    return {"raw": _GUIDE_SUCCESS_JSON, "file_url": _GUIDE_FILE_URL, "final_url": _GUIDE_FINAL_URL}


@pytest.fixture(autouse=True)
def _no_genstudio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own GENSTUDIO_* variables must not leak into a test."""
    for name in (GS.ENV_API_KEY, GS.ENV_BASE_URL, GS.ENV_WS_URL, L.ENV_LOG):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every delay the request loop asked to sleep, in order. Nothing actually sleeps."""
    recorded: list[float] = []

    async def record_sleep(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(_http, "sleep", record_sleep)
    return recorded


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
def base_url() -> str:
    return BASE_URL


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    """A respx router for the service at ``https://genstudio.test``; an unrouted request fails the test."""
    with respx.mock(base_url=BASE_URL, assert_all_called=False, assert_all_mocked=True) as router:
        yield router


@pytest.fixture(scope="session")
def _tls_context() -> ssl.SSLContext:
    """One TLS context for the whole run: building one per httpx client costs ~40 ms, most of this suite's time."""
    return ssl.create_default_context()


@pytest.fixture
async def http_client(_tls_context: ssl.SSLContext) -> AsyncIterator[httpx.AsyncClient]:
    """The httpx client the ``client`` fixtures are given (respx intercepts it like any other)."""
    async with httpx.AsyncClient(verify=_tls_context) as shared:
        yield shared


@pytest.fixture
async def client(api: respx.MockRouter, http_client: httpx.AsyncClient) -> AsyncIterator[AsyncGenStudio]:
    """A client with the fake key, bound to ``api``, default settings (``max_retries=2``).

    Tests of the client's own httpx client (made and closed by it) build their ``AsyncGenStudio`` themselves.
    """
    async with AsyncGenStudio(API_KEY, base_url=BASE_URL, http_client=http_client) as genstudio:
        yield genstudio


@pytest.fixture
async def make_client(
    api: respx.MockRouter, http_client: httpx.AsyncClient
) -> AsyncIterator[Callable[..., AsyncGenStudio]]:
    """Clients with other settings (keyword arguments of ``AsyncGenStudio``), bound to ``api``; closed at teardown."""
    made: list[AsyncGenStudio] = []

    def factory(**options: Any) -> AsyncGenStudio:
        options.setdefault("base_url", BASE_URL)
        options.setdefault("http_client", http_client)
        genstudio = AsyncGenStudio(options.pop("api_key", API_KEY), **options)
        made.append(genstudio)
        return genstudio

    yield factory
    for genstudio in made:
        await genstudio.aclose()


@pytest.fixture
def make_jwt() -> Callable[..., str]:
    """``make_jwt(claims)`` → a hand-built, unsigned-in-spirit JWT carrying ``claims``."""
    return encode_jwt

