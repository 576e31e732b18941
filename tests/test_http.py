"""The request loop: every status code and transport failure mapped to its error, and the retry rules.

The retry sleep is recorded by the autouse ``sleeps`` fixture (conftest), so every delay is asserted, none slept.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gc
import gzip
import itertools
import json
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import respx

from genstudio_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AsyncGenStudio,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    GenStudioError,
    InternalServerError,
    InvalidInputError,
    InvalidResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    Submission,
    _http,
)
from genstudio_async import _constants as C
from genstudio_async._http import HTTPCore, RetryPolicy, parse_retry_after, retry_delay
from genstudio_async._redact import Redactor
from genstudio_async._services import genstudio as GS

from .support import peak_memory, raw_http_server, read_request_head, zero_bomb

SUBMITTED = {"code": 0, "msg": "Success", "data": {"prompt_id": "cft-new", "prompt_token": "tok-new"}}
ONE_TASK = {
    "code": 0,
    "msg": "Success",
    "data": {"comfy_task_info": [{"comfy_task_id": "cft-1", "status": 2, "progress_num": 40}]},
}


def ok(body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json=body)


def failing(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"code": status, "msg": f"status {status}"})


# --- status codes → error classes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, InternalServerError),
        (504, InternalServerError),
        (409, APIStatusError),
        (418, APIStatusError),
        (422, APIStatusError),
    ],
)
@pytest.mark.parametrize("message_key", ["msg", "message"])  # GenStudio says msg; the other platform says message
async def test_status_code_maps_to_its_error_with_the_servers_message(
    api: respx.MockRouter,
    make_client: Callable[..., AsyncGenStudio],
    status: int,
    error_class: type[APIStatusError],
    message_key: str,
) -> None:
    route = api.post(GS.TASK_INFO_PATH).respond(
        status, json={"code": 10042, message_key: "workflow wf-x belongs to someone else", "traceid": "tr-77a"}
    )
    client = make_client(max_retries=0)

    with pytest.raises(APIStatusError) as caught:
        await client.get_task("cft-1")

    error = caught.value
    assert type(error) is error_class
    assert error.status_code == status
    assert error.message == "workflow wf-x belongs to someone else"
    assert error.code == 10042
    assert error.traceid == "tr-77a"
    text = str(error)
    assert f"HTTP {status}" in text and "workflow wf-x belongs to someone else" in text and "tr-77a" in text
    assert route.call_count == 1


async def test_rate_limit_error_carries_retry_after(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio]
) -> None:
    api.post(GS.TASK_INFO_PATH).respond(429, headers={"Retry-After": "7"}, json={"code": 429, "msg": "slow down"})
    client = make_client(max_retries=0)
    with pytest.raises(RateLimitError) as caught:
        await client.get_task("cft-1")
    assert caught.value.retry_after == 7.0
    assert caught.value.message == "slow down"


async def test_error_status_with_a_non_json_body_uses_the_text(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio]
) -> None:
    api.post(GS.TASK_INFO_PATH).respond(502, text="<html>Bad Gateway from the proxy</html>")
    client = make_client(max_retries=0)
    with pytest.raises(InternalServerError) as caught:
        await client.get_task("cft-1")
    assert "Bad Gateway from the proxy" in caught.value.message
    assert caught.value.code is None


async def test_error_status_with_an_empty_body_uses_the_reason(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio]
) -> None:
    api.post(GS.TASK_INFO_PATH).respond(403)
    client = make_client(max_retries=0)
    with pytest.raises(PermissionDeniedError) as caught:
        await client.get_task("cft-1")
    assert caught.value.message == "Forbidden"


# --- HTTP 200 that is still an error --------------------------------------------------------------------------


@pytest.mark.parametrize("message_key", ["msg", "message"])
async def test_code_not_zero_is_api_error_and_never_retried(
    api: respx.MockRouter, client: AsyncGenStudio, sleeps: list[float], message_key: str
) -> None:
    # get_task_info is idempotent and would be retried on a 5xx: a business error must still be sent once.
    route = api.post(GS.TASK_INFO_PATH).respond(
        200, json={"code": 40010, message_key: "comfy_task_ids is empty", "traceid": "tr-1", "data": None}
    )
    with pytest.raises(APIError) as caught:
        await client.get_task("cft-1")
    error = caught.value
    assert (error.code, error.message, error.traceid) == (40010, "comfy_task_ids is empty", "tr-1")
    assert "comfy_task_ids is empty" in str(error) and "code=40010" in str(error) and "tr-1" in str(error)
    assert route.call_count == 1
    assert sleeps == []


async def test_code_not_zero_on_submit_is_api_error_sent_once(
    api: respx.MockRouter, client: AsyncGenStudio, sleeps: list[float]
) -> None:
    route = api.post(GS.SUBMIT_PATH).respond(200, json={"code": 1, "msg": "workflow not found"})
    with pytest.raises(APIError, match="workflow not found"):
        await client.submit("wf-missing")
    assert route.call_count == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>captive portal</html>"),
        httpx.Response(200, text=""),
        httpx.Response(200, json=[1, 2, 3]),
        httpx.Response(200, json="Success"),
        httpx.Response(200, content=b"\xff\xfe{not utf8"),
    ],
    ids=["html", "empty", "json-list", "json-string", "bad-bytes"],
)
async def test_ok_status_with_a_body_that_is_not_an_envelope_is_api_error(
    api: respx.MockRouter, client: AsyncGenStudio, answer: httpx.Response
) -> None:
    api.post(GS.TASK_INFO_PATH).mock(return_value=answer)
    with pytest.raises(APIError, match="not a JSON object"):
        await client.get_task("cft-1")


# --- transport failures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.ProxyError],
)
async def test_transport_errors_are_connection_errors(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio], failure: type[httpx.TransportError]
) -> None:
    api.post(GS.TASK_INFO_PATH).mock(side_effect=failure("the line went dead"))
    client = make_client(max_retries=0)
    with pytest.raises(APIConnectionError) as caught:
        await client.get_task("cft-1")
    assert type(caught.value) is APIConnectionError
    assert "the line went dead" in str(caught.value)


@pytest.mark.parametrize("failure", [httpx.ConnectTimeout, httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout])
async def test_timeouts_are_api_timeout_errors(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio], failure: type[httpx.TimeoutException]
) -> None:
    api.post(GS.TASK_INFO_PATH).mock(side_effect=failure("too slow"))
    client = make_client(max_retries=0)
    with pytest.raises(APITimeoutError) as caught:
        await client.get_task("cft-1")
    assert isinstance(caught.value, APIConnectionError)
    assert failure.__name__ in str(caught.value)


def _garbled_gzip(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip at all"))


ESCAPE_CASES: list[tuple[str, Any]] = [
    ("connect-error", httpx.ConnectError("refused")),
    ("read-timeout", httpx.ReadTimeout("slow")),
    ("unsupported-protocol", httpx.UnsupportedProtocol("gopher")),
    ("garbled-gzip", _garbled_gzip),
    ("html", httpx.Response(200, text="<html/>")),
    ("envelope-without-data", httpx.Response(200, json={"code": 0, "msg": "Success"})),
    (
        "data-of-wrong-shape",
        httpx.Response(200, json={"code": 0, "data": {"comfy_task_info": "cft-1", "prompt_id": 5}}),
    ),
    ("entry-without-id", httpx.Response(200, json={"code": 0, "data": {"comfy_task_info": [{"status": 3}]}})),
    ("entry-not-an-object", httpx.Response(200, json={"code": 0, "data": {"comfy_task_info": [None]}})),
    ("code-not-a-number", httpx.Response(200, json={"code": "oops", "msg": "?"})),
    ("teapot", httpx.Response(418, text="I'm a teapot")),
    ("redirect", httpx.Response(302, headers={"Location": "https://elsewhere.test/"})),
]


@pytest.mark.parametrize(("name", "answer"), ESCAPE_CASES, ids=[name for name, _ in ESCAPE_CASES])
async def test_no_raw_httpx_pydantic_or_json_error_ever_escapes(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio], name: str, answer: Any
) -> None:
    for path in (GS.SUBMIT_PATH, GS.TASK_INFO_PATH, GS.CANCEL_PATH, GS.UPLOAD_PATH):
        if isinstance(answer, httpx.Response):
            api.post(path).mock(return_value=answer)
        else:
            api.post(path).mock(side_effect=answer)
    client = make_client(max_retries=0)

    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: client.submit("wf-1", {"6": {"inputs": {"text": "fox"}}}),
        lambda: client.get_tasks(["cft-1", "cft-2"]),
        lambda: client.get_task("cft-1"),
        lambda: client.cancel("cft-1"),
        lambda: client.upload_image(b"\x89PNG fake", filename="a.png"),
    ]
    for index, call in enumerate(calls):
        try:
            await call()
        except GenStudioError:
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"call {index} let a {type(exc).__module__}.{type(exc).__name__} escape: {exc}")
        # A few answers are acceptable for some endpoints (an envelope without data cancels fine).
        assert name in {"envelope-without-data", "data-of-wrong-shape", "entry-without-id", "entry-not-an-object"}


async def test_unserialisable_post_process_dict_is_invalid_input_before_any_request(
    api: respx.MockRouter, client: AsyncGenStudio
) -> None:
    api.post(GS.TASK_INFO_PATH).respond(200, json=ONE_TASK)
    with pytest.raises(InvalidInputError, match="JSON"):
        await client.get_tasks(["cft-1"], image_post_process={"format": "jpg", "quality": {1, 2}})
    assert api.calls.call_count == 0


# --- retry rules: submit is not idempotent -------------------------------------------------------------------


async def test_submit_after_read_timeout_is_not_sent_again(
    api: respx.MockRouter, client: AsyncGenStudio, sleeps: list[float]
) -> None:
    route = api.post(GS.SUBMIT_PATH).mock(side_effect=[httpx.ReadTimeout("no answer"), ok(SUBMITTED)])
    with pytest.raises(APITimeoutError):
        await client.submit("wf-1")
    assert route.call_count == 1  # a second send could start a second, billed task
    assert sleeps == []


@pytest.mark.parametrize("failure", [httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.WriteTimeout])
async def test_submit_after_the_request_may_have_arrived_is_not_sent_again(
    api: respx.MockRouter, client: AsyncGenStudio, failure: type[httpx.TransportError]
) -> None:
    route = api.post(GS.SUBMIT_PATH).mock(side_effect=[failure("mid-flight"), ok(SUBMITTED)])
    with pytest.raises(APIConnectionError):
        await client.submit("wf-1")
    assert route.call_count == 1


async def test_submit_rate_limited_is_sent_again_after_retry_after(
    api: respx.MockRouter, client: AsyncGenStudio, sleeps: list[float]
) -> None:
    route = api.post(GS.SUBMIT_PATH).mock(side_effect=[failing(429, {"Retry-After": "2"}), ok(SUBMITTED)])
    submission = await client.submit("wf-1", {"6": {"inputs": {"text": "fox"}}})
    assert submission == Submission(prompt_id="cft-new", prompt_token="tok-new")
    assert route.call_count == 2
    assert sleeps == [pytest.approx(2.0, abs=0.05)]  # the hold, less the time since the 429 came
    # The same body both times.
    first, second = (json.loads(call.request.content) for call in route.calls)
    assert first == second == {"workflow_id": "wf-1", "prompt": {"6": {"inputs": {"text": "fox"}}}}


async def test_submit_503_is_sent_again(api: respx.MockRouter, client: AsyncGenStudio, sleeps: list[float]) -> None:
    route = api.post(GS.SUBMIT_PATH).mock(side_effect=[failing(503), ok(SUBMITTED)])
    assert (await client.submit("wf-1")).prompt_id == "cft-new"
    assert route.call_count == 2
    assert len(sleeps) == 1


@pytest.mark.parametrize("status", [500, 502, 504, 408])
async def test_submit_server_error_is_not_sent_again(
    api: respx.MockRouter, client: AsyncGenStudio, sleeps: list[float], status: int
) -> None:
    route = api.post(GS.SUBMIT_PATH).mock(side_effect=[failing(status), ok(SUBMITTED)])
    with pytest.raises(APIStatusError) as caught:
        await client.submit("wf-1")
    assert caught.value.status_code == status
    assert route.call_count == 1
    assert sleeps == []


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_submit_whose_connection_never_opened_is_sent_again(
    api: respx.MockRouter, client: AsyncGenStudio, sleeps: list[float], failure: type[httpx.TransportError]
) -> None:
    route = api.post(GS.SUBMIT_PATH).mock(side_effect=[failure("connection refused"), ok(SUBMITTED)])
    assert (await client.submit("wf-1")).prompt_id == "cft-new"
    assert route.call_count == 2
    assert len(sleeps) == 1


async def test_upload_after_read_timeout_is_not_sent_again(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    route = api.post(GS.UPLOAD_PATH).mock(
        side_effect=[httpx.ReadTimeout("slow"), ok({"code": 0, "data": {"image_id": "x"}})]
    )
    with pytest.raises(APITimeoutError):
        await client.upload_image(b"png bytes")
    assert route.call_count == 1


# --- retry rules: idempotent calls -------------------------------------------------------------------------------


async def test_get_task_is_retried_on_503_then_succeeds(
    api: respx.MockRouter, client: AsyncGenStudio, sleeps: list[float]
) -> None:
    route = api.post(GS.TASK_INFO_PATH).mock(side_effect=[failing(503), ok(ONE_TASK)])
    info = await client.get_task("cft-1")
    assert info.progress == 40
    assert route.call_count == 2
    assert len(sleeps) == 1


async def test_get_task_is_retried_on_read_timeout(
    api: respx.MockRouter, client: AsyncGenStudio, sleeps: list[float]
) -> None:
    route = api.post(GS.TASK_INFO_PATH).mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.ReadError("reset"), ok(ONE_TASK)]
    )
    assert (await client.get_task("cft-1")).prompt_id == "cft-1"
    assert route.call_count == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize("status", [408, 429, 500, 502, 504])
async def test_get_task_is_retried_on_retryable_statuses(
    api: respx.MockRouter, client: AsyncGenStudio, status: int
) -> None:
    route = api.post(GS.TASK_INFO_PATH).mock(side_effect=[failing(status), ok(ONE_TASK)])
    assert (await client.get_task("cft-1")).prompt_id == "cft-1"
    assert route.call_count == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
async def test_client_errors_are_not_retried(
    api: respx.MockRouter, client: AsyncGenStudio, sleeps: list[float], status: int
) -> None:
    route = api.post(GS.TASK_INFO_PATH).mock(side_effect=[failing(status), ok(ONE_TASK)])
    with pytest.raises(APIStatusError):
        await client.get_task("cft-1")
    assert route.call_count == 1
    assert sleeps == []


async def test_cancel_is_retried_on_503(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    route = api.post(GS.CANCEL_PATH).mock(side_effect=[failing(503), ok({"code": 0, "msg": "Success"})])
    await client.cancel("cft-1")
    assert route.call_count == 2


@pytest.mark.parametrize("max_retries", [0, 1, 3])
async def test_retries_stop_after_max_retries(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio], sleeps: list[float], max_retries: int
) -> None:
    route = api.post(GS.TASK_INFO_PATH).mock(return_value=failing(503))
    client = make_client(max_retries=max_retries)
    with pytest.raises(InternalServerError):
        await client.get_task("cft-1")
    assert route.call_count == max_retries + 1
    assert len(sleeps) == max_retries


async def test_submit_connect_errors_stop_after_max_retries(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio]
) -> None:
    route = api.post(GS.SUBMIT_PATH).mock(side_effect=httpx.ConnectError("refused"))
    client = make_client(max_retries=2)
    with pytest.raises(APIConnectionError, match="refused"):
        await client.submit("wf-1")
    assert route.call_count == 3


# --- back-off --------------------------------------------------------------------------------------------------


def _ceilings(count: int) -> list[float]:
    return [min(C.INITIAL_RETRY_DELAY * 2**attempt, C.MAX_RETRY_DELAY) for attempt in range(count)]


async def test_backoff_grows_and_is_jittered_within_half_to_full_ceiling(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio], sleeps: list[float]
) -> None:
    api.post(GS.TASK_INFO_PATH).mock(return_value=failing(503))
    client = make_client(max_retries=5)
    with pytest.raises(InternalServerError):
        await client.get_task("cft-1")

    # Ceilings 0.5, 1, 2, 4, 8: each delay is drawn from [ceiling/2, ceiling], so however the jitter falls,
    # every delay is at least the one before (the next range starts where this one ends).
    assert len(sleeps) == 5
    for delay, ceiling in zip(sleeps, _ceilings(5), strict=True):
        assert 0.5 * ceiling <= delay <= ceiling
    assert all(later >= earlier for earlier, later in itertools.pairwise(sleeps))
    assert max(sleeps) <= C.MAX_RETRY_DELAY


@pytest.mark.parametrize(("draw", "factor"), [(0.0, 0.5), (0.5, 0.75), (0.999999, 0.9999995)])
async def test_backoff_jitter_is_exactly_half_to_full(
    api: respx.MockRouter,
    make_client: Callable[..., AsyncGenStudio],
    sleeps: list[float],
    monkeypatch: pytest.MonkeyPatch,
    draw: float,
    factor: float,
) -> None:
    monkeypatch.setattr(_http, "random", SimpleNamespace(random=lambda: draw))
    api.post(GS.TASK_INFO_PATH).mock(return_value=failing(503))
    client = make_client(max_retries=6)
    with pytest.raises(InternalServerError):
        await client.get_task("cft-1")
    # 0.5, 1, 2, 4, 8, then capped at 8: grows, then stops growing at the cap.
    assert sleeps == pytest.approx([ceiling * factor for ceiling in _ceilings(6)])
    assert _ceilings(6) == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


def test_retry_delay_prefers_the_servers_hint_and_caps_it() -> None:
    policy = RetryPolicy()
    assert retry_delay(0, policy, retry_after=2.0) == 2.0
    assert retry_delay(3, policy, retry_after=0.0) == 0.0
    assert retry_delay(0, policy, retry_after=-5.0) == 0.0
    assert retry_delay(0, policy, retry_after=10_000.0) == C.MAX_RETRY_AFTER


async def test_retry_after_beyond_the_cap_is_not_slept_on(
    api: respx.MockRouter, client: AsyncGenStudio, sleeps: list[float]
) -> None:
    too_long = str(int(C.MAX_RETRY_AFTER) + 60)
    route = api.post(GS.SUBMIT_PATH).mock(side_effect=[failing(429, {"Retry-After": too_long}), ok(SUBMITTED)])
    with pytest.raises(RateLimitError) as caught:
        await client.submit("wf-1")
    assert caught.value.retry_after == float(too_long)
    assert route.call_count == 1
    assert sleeps == []


async def test_retry_after_as_an_http_date(
    api: respx.MockRouter, client: AsyncGenStudio, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = 1_700_000_000.0
    monkeypatch.setattr(_http, "time", SimpleNamespace(time=lambda: now, perf_counter=lambda: 0.0))
    in_five_seconds = email.utils.formatdate(now + 5, usegmt=True)  # "Tue, 14 Nov 2023 22:13:25 GMT"
    route = api.post(GS.TASK_INFO_PATH).mock(side_effect=[failing(503, {"Retry-After": in_five_seconds}), ok(ONE_TASK)])
    assert (await client.get_task("cft-1")).prompt_id == "cft-1"
    assert route.call_count == 2
    assert sleeps == [5.0]


async def test_retry_after_ms_header(api: respx.MockRouter, client: AsyncGenStudio, sleeps: list[float]) -> None:
    api.post(GS.TASK_INFO_PATH).mock(side_effect=[failing(429, {"retry-after-ms": "1500"}), ok(ONE_TASK)])
    await client.get_task("cft-1")
    assert sleeps == [pytest.approx(1.5, abs=0.05)]


def test_parse_retry_after_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    now = 1_700_000_000.0
    monkeypatch.setattr(_http, "time", SimpleNamespace(time=lambda: now, perf_counter=lambda: 0.0))
    assert parse_retry_after(httpx.Headers({"Retry-After": "3"})) == 3.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "0.25"})) == 0.25
    assert parse_retry_after(httpx.Headers({"Retry-After": email.utils.formatdate(now + 42, usegmt=True)})) == 42.0
    assert parse_retry_after(httpx.Headers({"Retry-After": email.utils.formatdate(now - 42, usegmt=True)})) == 0.0
    assert parse_retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert parse_retry_after(httpx.Headers()) is None


# --- storage downloads: an error answer whose body breaks off -------------------------------------------------


class _BrokenStream(httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"<Error><Code>"
        raise httpx.ReadError("connection reset mid-body")


async def test_storage_error_whose_body_breaks_off_is_still_a_status_error() -> None:
    with respx.mock(assert_all_called=True) as storage:
        storage.get("https://oss.test/out/a.png").mock(return_value=httpx.Response(500, stream=_BrokenStream()))
        async with httpx.AsyncClient() as http_client:
            core = HTTPCore(
                api_key="sk-unused",
                base_url="https://genstudio.test",
                http_client=http_client,
                timeout=httpx.Timeout(5.0),
                retry_policy=RetryPolicy(max_retries=0),
                redactor=Redactor(),
            )
            with pytest.raises(InternalServerError) as caught:
                async with core.stream_get("https://oss.test/out/a.png"):
                    pytest.fail("an error answer must not be yielded")
    assert caught.value.status_code == 500


async def test_a_connection_error_says_whether_the_request_left(api: respx.MockRouter, client: AsyncGenStudio) -> None:
    from genstudio_async import APIConnectionError, APITimeoutError

    route = api.post("/api/maas/comfy_task_api/prompt")
    route.side_effect = httpx.ConnectError("connection refused")
    with pytest.raises(APIConnectionError) as refused:
        await client.submit("wf-1")
    assert refused.value.request_sent is False  # no task can exist: safe to submit again
    route.side_effect = httpx.ReadTimeout("no answer")
    with pytest.raises(APITimeoutError) as timed_out:
        await client.submit("wf-1")
    assert timed_out.value.request_sent is True  # the service may have created the task


# --- hostile servers: answers that never end, drip, or inflate --------------------------------------------------

_TASK_ANSWER = json.dumps({"code": 0, "data": {"comfy_task_info": [{"comfy_task_id": "cft-1", "status": 2}]}})


async def _dripping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers with a byte every 20 ms, for ever: no single read ever waits long enough to time out."""
    await read_request_head(reader)
    for byte in itertools.cycle(b"HTTP/1.1 200 OK\r\nX-Slow: "):
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.02)


def _answer_head(extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}\r\n".encode()


@pytest.mark.parametrize("call", ["get_task", "submit"])
async def test_a_server_that_drips_its_answer_is_cut_off_by_the_overall_deadline(call: str) -> None:
    requests = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        requests += 1
        await _dripping(reader, writer)

    async with raw_http_server(handler) as origin, AsyncGenStudio("sk-drip-key-0123456789", base_url=origin,
                                                                   timeout=0.3, max_retries=2) as client:
        with pytest.raises(APITimeoutError, match="overall deadline") as caught:
            operation = client.get_task("cft-1") if call == "get_task" else client.submit("wf-1")
            await asyncio.wait_for(operation, timeout=10)  # a failure bound, not a speed claim
    assert caught.value.request_sent is True
    # A poll is retried; a submit that may have reached the server never is (no second, billed task).
    assert requests == (3 if call == "get_task" else 1)


async def test_an_answer_that_never_ends_is_refused_at_the_size_cap() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(_answer_head("Transfer-Encoding: chunked\r\n") + b"5\r\n{\"a\":\r\n")
        chunk = b" " * 8192
        while True:
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()

    async with raw_http_server(endless) as origin, AsyncGenStudio(
        "sk-endless-key-0123456789", base_url=origin, max_response_bytes=256 * 1024, max_retries=0
    ) as client:
        with pytest.raises(ResponseTooLargeError) as caught:
            await asyncio.wait_for(client.get_task("cft-1"), timeout=10)
    assert caught.value.limit == 256 * 1024
    assert "max_response_bytes" in str(caught.value) and "262,144" in str(caught.value)


async def test_an_answer_cut_short_is_our_error_and_a_submit_is_not_sent_again() -> None:
    requests = 0

    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal requests
        requests += 1
        await read_request_head(reader)
        body = _TASK_ANSWER.encode()
        writer.write(_answer_head(f"Content-Length: {len(body)}\r\n") + body[:-10])  # ten bytes short
        await writer.drain()
        writer.close()

    async with raw_http_server(cut_short) as origin, AsyncGenStudio(
        "sk-short-key-0123456789", base_url=origin, max_retries=2
    ) as client:
        with pytest.raises(APIConnectionError) as caught:
            await asyncio.wait_for(client.submit("wf-1"), timeout=10)
    assert caught.value.request_sent is True and requests == 1
    cause = caught.value.__cause__
    assert isinstance(cause, httpx.TransportError) and cause.request.method == "POST"


async def test_a_small_gzip_answer_that_inflates_past_the_cap_is_refused() -> None:
    bomb = gzip.compress(b'{"code": 0, "data": "' + b"0" * (8 * 1024 * 1024) + b'"}')
    assert len(bomb) < 64 * 1024

    async def inflating(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(_answer_head(f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n") + bomb)
        await writer.drain()
        await reader.read()  # keep the connection until the client hangs up

    async with raw_http_server(inflating) as origin, AsyncGenStudio(
        "sk-bomb-key-0123456789", base_url=origin, max_response_bytes=1024 * 1024, max_retries=0
    ) as client:
        with pytest.raises(ResponseTooLargeError):
            await asyncio.wait_for(client.get_task("cft-1"), timeout=10)


async def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_read() -> None:
    async def announcing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        writer.write(_answer_head("Content-Length: 999999999\r\n") + b"{")
        await writer.drain()
        await reader.read()

    async with raw_http_server(announcing) as origin, AsyncGenStudio(
        "sk-length-key-0123456789", base_url=origin, max_response_bytes=1024, max_retries=0
    ) as client:
        with pytest.raises(ResponseTooLargeError):
            await asyncio.wait_for(client.get_task("cft-1"), timeout=10)


async def test_an_answer_within_the_cap_and_deadline_is_read_as_before() -> None:
    async def prompt(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request_head(reader)
        body = _TASK_ANSWER.encode()
        writer.write(_answer_head(f"Content-Length: {len(body)}\r\n") + body)
        await writer.drain()
        await reader.read()

    async with raw_http_server(prompt) as origin, AsyncGenStudio(
        "sk-fine-key-0123456789", base_url=origin, max_response_bytes=len(_TASK_ANSWER), timeout=5
    ) as client:
        info = await client.get_task("cft-1")
    assert info.prompt_id == "cft-1"

# --- content codings: one at most, inflated in bounded steps --------------------------------------------------

_SMALL_CAP = 64 * 1024
# Far more than any test's cap allows; a client that inflated a network chunk in one go would hold tens of MB.
_BOMB_MIB = 100


@asynccontextmanager
async def _coded_answer_server(
    body: bytes, coding: str, heads: list[bytes] | None = None, *, sized: bool = True
) -> AsyncIterator[str]:
    """A server answering every request with ``body`` under ``Content-Encoding: coding`` (heads recorded).

    ``sized=False``: no Content-Length (the body ends when the connection does), so no cap can refuse it up front.
    """

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_request_head(reader)
            if heads is not None:
                heads.append(head)
            framing = f"Content-Length: {len(body)}" if sized else "Connection: close"
            writer.write(_answer_head(f"Content-Encoding: {coding}\r\n{framing}\r\n") + body)
            await writer.drain()
            if not sized:
                return

    async with raw_http_server(answer) as origin:
        yield origin


async def test_a_stacked_content_coding_is_refused_before_anything_is_inflated() -> None:
    bomb = zero_bomb(_BOMB_MIB, layers=2)  # r01: "gzip, gzip" made 1.8 kB into gigabytes before the cap counted
    assert len(bomb) < 8 * 1024
    heads: list[bytes] = []
    async with _coded_answer_server(bomb, "gzip, gzip", heads, sized=False) as origin, AsyncGenStudio(
        "sk-stack-key-0123456789", base_url=origin, max_response_bytes=_SMALL_CAP
    ) as client:
        with peak_memory() as peak, pytest.raises(InvalidResponseError) as caught:
            await asyncio.wait_for(client.get_task("cft-1"), timeout=10)
    assert type(caught.value) is InvalidResponseError  # refused for what it is, not for what it grew to
    assert "'gzip, gzip'" in str(caught.value) and "more than one coding" in str(caught.value)
    assert peak.bytes < 4 << 20
    assert len(heads) == 1  # an answer that cannot be read is not asked for again


async def test_a_gzip_bomb_never_inflates_more_than_a_chunk_past_the_cap() -> None:
    bomb = zero_bomb(_BOMB_MIB)
    async with _coded_answer_server(bomb, "gzip", sized=False) as origin, AsyncGenStudio(
        "sk-bomb-key-0123456789", base_url=origin, max_response_bytes=_SMALL_CAP, max_retries=0
    ) as client:
        with peak_memory() as peak, pytest.raises(ResponseTooLargeError) as caught:
            await asyncio.wait_for(client.get_task("cft-1"), timeout=10)
    assert caught.value.limit == _SMALL_CAP
    assert peak.bytes < 4 << 20  # httpx inflated each 64 kB network chunk whole: ~64 MB at once


def _zlib(data: bytes, wbits: int) -> bytes:
    squeezer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return squeezer.compress(data) + squeezer.flush()


_CODED_ANSWERS: list[tuple[str, str, bytes]] = [
    ("gzip", "gzip", gzip.compress(_TASK_ANSWER.encode())),
    ("x-gzip", "x-gzip", gzip.compress(_TASK_ANSWER.encode())),
    ("upper-case", "GZIP", gzip.compress(_TASK_ANSWER.encode())),
    ("with-identity", "identity, gzip", gzip.compress(_TASK_ANSWER.encode())),
    ("identity", "identity", _TASK_ANSWER.encode()),
    ("deflate-zlib", "deflate", _zlib(_TASK_ANSWER.encode(), 15)),
    ("deflate-raw", "deflate", _zlib(_TASK_ANSWER.encode(), -15)),  # what some servers send as "deflate"
    (
        "gzip-members",  # RFC 1952: a gzip body may be several members, one after another
        "gzip",
        gzip.compress(_TASK_ANSWER[:20].encode()) + gzip.compress(_TASK_ANSWER[20:].encode()) + b"\0\0",
    ),
]


@pytest.mark.parametrize(("coding", "body"), [case[1:] for case in _CODED_ANSWERS], ids=[c[0] for c in _CODED_ANSWERS])
async def test_an_answer_in_one_coding_the_sdk_decodes_is_read(coding: str, body: bytes) -> None:
    async with _coded_answer_server(body, coding) as origin, AsyncGenStudio(
        "sk-coded-key-0123456789", base_url=origin, max_retries=0
    ) as client:
        info = await asyncio.wait_for(client.get_task("cft-1"), timeout=10)
    assert info.prompt_id == "cft-1"


_REFUSED_CODINGS: list[tuple[str, str, bytes]] = [
    ("brotli", "br", b"\x0b\x02\x80{}\x03"),
    ("zstd", "zstd", b"(\xb5/\xfd\x00X\x11\x00\x00{}"),
    ("compress", "compress", b"\x1f\x9d\x90{}"),
    ("stacked", "gzip, gzip", gzip.compress(gzip.compress(_TASK_ANSWER.encode()))),
    ("two-headers", "deflate\r\nContent-Encoding: gzip", gzip.compress(_TASK_ANSWER.encode())),
]


@pytest.mark.parametrize(
    ("coding", "body"), [case[1:] for case in _REFUSED_CODINGS], ids=[c[0] for c in _REFUSED_CODINGS]
)
async def test_a_coding_the_sdk_does_not_decode_is_an_invalid_response_naming_it(coding: str, body: bytes) -> None:
    async with _coded_answer_server(body, coding) as origin, AsyncGenStudio(
        "sk-refused-key-0123456789", base_url=origin, max_retries=0
    ) as client:
        with pytest.raises(InvalidResponseError) as caught:
            await asyncio.wait_for(client.get_task("cft-1"), timeout=10)
    named = coding.replace("\r\nContent-Encoding: ", ", ")
    assert f"Content-Encoding is {named!r}" in str(caught.value)


_BROKEN_BODIES: list[tuple[str, str, bytes, str]] = [
    ("corrupt", "gzip", b"\x1f\x8b\x08\x00" + b"not gzip at all", "corrupt"),
    ("cut-off", "gzip", gzip.compress(_TASK_ANSWER.encode())[:-12], "ends before"),
    ("cut-off-deflate", "deflate", b"x", "ends before"),
    ("after-the-end", "deflate", _zlib(_TASK_ANSWER.encode(), 15) + b"{}", "after the end"),
]


@pytest.mark.parametrize(
    ("coding", "body", "says"), [case[1:] for case in _BROKEN_BODIES], ids=[c[0] for c in _BROKEN_BODIES]
)
async def test_a_body_that_is_not_what_its_coding_says_is_an_invalid_response(
    coding: str, body: bytes, says: str
) -> None:
    async with _coded_answer_server(body, coding) as origin, AsyncGenStudio(
        "sk-broken-key-0123456789", base_url=origin, max_retries=0
    ) as client:
        with pytest.raises(InvalidResponseError, match=says):
            await asyncio.wait_for(client.get_task("cft-1"), timeout=10)


async def test_api_requests_ask_only_for_the_codings_the_sdk_decodes() -> None:
    heads: list[bytes] = []
    body = gzip.compress(_TASK_ANSWER.encode())
    async with (
        _coded_answer_server(body, "gzip", heads) as origin,
        # An injected client may offer more by default (httpx offers br and zstd when they are installed).
        httpx.AsyncClient(headers={"Accept-Encoding": "br, zstd, gzip"}) as http_client,
        AsyncGenStudio("sk-accept-key-0123456789", base_url=origin, http_client=http_client) as client,
    ):
        await asyncio.wait_for(client.get_task("cft-1"), timeout=10)
    assert b"\r\naccept-encoding: gzip, deflate\r\n" in heads[0].lower()


@pytest.mark.parametrize("value", [0, -1, 1.5, True])
def test_a_size_cap_must_be_a_positive_number_of_bytes(value: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_response_bytes"):
        AsyncGenStudio("sk-cap-key-0123456789", base_url="https://genstudio.test", max_response_bytes=value)


# --- one pace for the whole client: a rate limit seen by one request holds back the others -----------------


async def test_a_rate_limit_answered_to_one_request_holds_back_the_next_ones(
    api: respx.MockRouter, client: AsyncGenStudio, sleeps: list[float]
) -> None:
    answers = [
        httpx.Response(429, headers={"Retry-After": "2"}, json={"code": 429, "msg": "slow down"}),
        httpx.Response(200, json={"code": 0, "data": {"comfy_task_info": []}}),
        httpx.Response(200, json={"code": 0, "data": {"comfy_task_info": []}}),
        httpx.Response(200, json={"code": 0, "data": SUBMITTED["data"]}),
    ]
    route = api.post(GS.TASK_INFO_PATH).mock(side_effect=answers[:3])
    submits = api.post(GS.SUBMIT_PATH).mock(side_effect=answers[3:])
    assert await client.get_tasks(["cft-1"]) == []  # its own 429, then its retry: one sleep of 2 s
    assert sleeps == [pytest.approx(2.0, abs=0.05)]
    # Requests sent after it wait out the same hold (the fake sleep lets no time pass), submits included.
    assert await client.get_tasks(["cft-2"]) == []
    await client.submit("wf-1")
    assert len(sleeps) == 3 and sleeps[1:] == pytest.approx([2.0, 2.0], abs=0.5)
    assert route.call_count == 3 and submits.call_count == 1  # delayed, never sent twice
    assert client._http.pacer.holds == 1


async def test_without_a_rate_limit_nothing_waits(
    api: respx.MockRouter, client: AsyncGenStudio, sleeps: list[float]
) -> None:
    api.post(GS.TASK_INFO_PATH).respond(json={"code": 0, "data": {"comfy_task_info": []}})
    for _ in range(3):
        await client.get_tasks(["cft-1"])
    assert sleeps == []


async def test_an_error_body_in_a_charset_nobody_knows_is_still_our_error(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio]
) -> None:
    """A hostile (or broken) server names a charset Python has no codec for: the caller gets the status error
    with the text read as UTF-8, not a raw ``LookupError`` from decoding it."""
    api.post(GS.TASK_INFO_PATH).respond(
        502, content=b"bad gateway upstream", headers={"Content-Type": "text/plain; charset=x-no-such-codec"}
    )
    client = make_client(max_retries=0)
    with pytest.raises(InternalServerError) as caught:
        await client.get_task("cft-1")
    assert caught.value.status_code == 502
    assert "bad gateway upstream" in str(caught.value)


async def test_an_error_body_is_decoded_in_the_charset_its_content_type_names(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio]
) -> None:
    api.post(GS.TASK_INFO_PATH).respond(
        503, content="网关超时".encode("gb18030"), headers={"Content-Type": "text/plain; charset=gb18030"}
    )
    client = make_client(max_retries=0)
    with pytest.raises(InternalServerError) as caught:
        await client.get_task("cft-1")
    assert "网关超时" in str(caught.value)


@pytest.mark.parametrize("injected", [False, True])
async def test_every_api_call_carries_the_key_and_the_sdks_own_headers(injected: bool) -> None:
    """The SDK's own client carries the headers as its defaults, an injected one gets them on each request: the
    server sees the same either way (an injected client's own defaults are overridden)."""
    heads: list[bytes] = []
    async with contextlib.AsyncExitStack() as stack:
        origin = await stack.enter_async_context(_coded_answer_server(_TASK_ANSWER.encode(), "identity", heads))
        http_client = None
        if injected:
            http_client = await stack.enter_async_context(
                httpx.AsyncClient(headers={"User-Agent": "someone-else/1", "Accept": "text/html"})
            )
        client = await stack.enter_async_context(
            AsyncGenStudio("sk-heads-key-0123456789", base_url=origin, http_client=http_client)
        )
        await asyncio.wait_for(client.get_task("cft-1"), timeout=10)
    head = heads[0].lower()
    assert b"\r\nauthorization: bearer sk-heads-key-0123456789\r\n" in head
    assert b"\r\naccept: application/json\r\n" in head
    assert b"\r\naccept-encoding: gzip, deflate\r\n" in head
    assert b"\r\nuser-agent: genstudio-async/" in head
    assert b"someone-else" not in head and b"text/html" not in head


# --- garbage -------------------------------------------------------------------------------------------------


async def test_a_read_answer_leaves_no_response_for_the_garbage_collector(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio]
) -> None:
    # httpx's response and the stream bound to it refer to each other: left as they are, each request leaves a
    # cycle that only a collection frees (at ten thousand tasks, more and longer collections).
    api.post(GS.TASK_INFO_PATH).mock(side_effect=[ok(ONE_TASK), failing(404)])
    client = make_client(max_retries=0)
    gc.collect()
    flags = gc.get_debug()
    gc.set_debug(flags | gc.DEBUG_SAVEALL)
    try:
        await client.get_task("cft-1")
        with pytest.raises(NotFoundError):
            await client.get_task("cft-1")
        gc.collect()
        left = [thing for thing in gc.garbage if isinstance(thing, httpx.Response)]
    finally:
        gc.set_debug(flags)
        gc.garbage.clear()
    assert left == []
