"""No secret in any repr, error message or DEBUG log line.

The API key and every prompt_token are credentials. These tests run the ordinary calls and the error paths with
the SDK's logger at DEBUG, have the server echo both secrets back, and then look for the secrets everywhere a
user could see text: the log, ``repr``/``str`` of the client and the submission, and every raised error. A short
prefix (``mask``) may appear; the whole secret, or anything longer than the prefix, may not.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel

from genstudio_async import (
    APIConnectionError,
    APIError,
    AsyncGenStudio,
    AuthenticationError,
    GenStudioError,
    InternalServerError,
    Submission,
)
from genstudio_async import _constants as C
from genstudio_async._redact import Redactor, mask
from genstudio_async._services import genstudio as GS

VISIBLE = C.SECRET_VISIBLE_PREFIX


def assert_no_secret(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text
        # Not even most of it: at most the visible prefix may be shown.
        assert secret[: VISIBLE + 1] not in text, f"more than {VISIBLE} characters of a secret in {text!r}"


def texts_of(error: BaseException) -> list[str]:
    """Every text a user can get out of ``error``: str, repr, args, and each public attribute (body, info...)."""
    texts = [str(error), repr(error), *(str(arg) for arg in error.args)]
    if isinstance(error, GenStudioError):
        texts.append(error.message)
    for name, value in vars(error).items():
        if name.startswith("_"):
            continue
        if isinstance(value, BaseModel):
            texts += [value.model_dump_json(), repr(value), repr(value.model_extra)]
        else:
            texts += [repr(value), json.dumps(value, default=repr)]
    return texts


@pytest.fixture
def token(make_jwt: Callable[..., str]) -> str:
    return make_jwt({"tenant_id": "te-b905754427352261", "task_id": "cft-secret", "iss": "infini", "exp": 1728699963})


async def test_no_secret_in_logs_reprs_or_errors(
    api: respx.MockRouter,
    client: AsyncGenStudio,
    api_key: str,
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="genstudio_async")
    echo = f"bad token {token} for key {api_key} (Authorization: Bearer {api_key})"

    api.post(GS.SUBMIT_PATH).mock(
        side_effect=[
            httpx.Response(
                200, json={"code": 0, "msg": "Success", "data": {"prompt_id": "cft-secret", "prompt_token": token}}
            ),
            httpx.Response(200, json={"code": 1, "msg": echo, "traceid": "tr-1"}),
            httpx.Response(401, json={"code": 401, "message": echo}),
            httpx.Response(500, text=f"<pre>Traceback: {echo}</pre>"),
        ]
    )
    api.post(GS.TASK_INFO_PATH).mock(
        side_effect=[
            httpx.Response(
                200, json={"code": 0, "data": {"comfy_task_info": [{"comfy_task_id": "cft-secret", "status": 2}]}}
            ),
            httpx.Response(200, json={"code": 0, "data": {"comfy_task_info": []}}),
            httpx.ConnectError(f"proxy refused: {echo}"),
            httpx.ConnectError(f"proxy refused: {echo}"),
            httpx.ConnectError(f"proxy refused: {echo}"),
        ]
    )
    api.post(GS.CANCEL_PATH).mock(
        side_effect=[
            httpx.Response(200, json={"code": 0, "msg": "Success"}),
            httpx.Response(403, text=echo),
            httpx.ReadTimeout(f"timed out talking to {echo}"),
            httpx.ReadTimeout(f"timed out talking to {echo}"),
            httpx.ReadTimeout(f"timed out talking to {echo}"),
        ]
    )
    api.post(GS.UPLOAD_PATH).mock(
        side_effect=[
            httpx.Response(200, json={"code": 0, "data": {"image_id": "te-1/sui-1.png"}}),
            httpx.Response(200, json={"code": 7, "msg": echo}),
        ]
    )

    submission = await client.submit("wf-1", {"6": {"inputs": {"text": "a red fox"}}})
    assert submission.prompt_token == token  # the caller does get the token itself
    assert (await client.get_task(submission)).prompt_id == "cft-secret"
    await client.cancel(submission)
    assert await client.upload_image(b"png", filename="a.png") == "te-1/sui-1.png"

    errors: list[GenStudioError] = []
    attempts: list[Callable[[], Any]] = [
        lambda: client.submit("wf-1"),  # code != 0 echoing both secrets
        lambda: client.submit("wf-1"),  # 401 with the other platform's "message"
        lambda: client.submit("wf-1"),  # 500 with a plain-text traceback
        lambda: client.get_task(submission),  # not found
        lambda: client.get_task(submission),  # connection errors, retried, then raised
        lambda: client.cancel(submission),  # 403 text body
        lambda: client.cancel(submission),  # timeouts, retried, then raised
        lambda: client.upload_image(b"png"),  # code != 0
    ]
    for attempt in attempts:
        with pytest.raises(GenStudioError) as caught:
            await attempt()
        errors.append(caught.value)

    assert [type(error).__name__ for error in errors] == [
        "APIError",
        "AuthenticationError",
        "InternalServerError",
        "NotFoundError",
        "APIConnectionError",
        "PermissionDeniedError",
        "APITimeoutError",
        "APIError",
    ]
    # The log really was written at DEBUG, so its silence about secrets means something.
    assert "POST /api/maas/comfy_task_api/prompt" in caplog.text
    assert "retrying" in caplog.text
    assert any(record.levelno == logging.DEBUG and record.name == "genstudio_async" for record in caplog.records)

    everything = [caplog.text, repr(client), str(client), repr(submission), str(submission)]
    for error in errors:
        everything += texts_of(error)
    for text in everything:
        assert_no_secret(text, api_key, token)
    # The server's words around the secrets survive, so the errors still say what went wrong.
    assert "bad token" in str(errors[0]) and mask(token) in str(errors[0])


async def test_a_token_that_is_not_jwt_shaped_is_still_redacted_once_submitted(
    api: respx.MockRouter, client: AsyncGenStudio, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="genstudio_async")
    opaque = "opaque-session-token-4f1c9a7e2b6d8035"
    api.post(GS.SUBMIT_PATH).mock(
        side_effect=[
            httpx.Response(200, json={"code": 0, "data": {"prompt_id": "cft-1", "prompt_token": opaque}}),
            httpx.Response(200, json={"code": 9, "msg": f"token {opaque} is rate limited"}),
        ]
    )
    submission = await client.submit("wf-1")
    with pytest.raises(APIError) as caught:
        await client.submit("wf-1")
    for text in [*texts_of(caught.value), repr(submission), str(submission), caplog.text]:
        assert_no_secret(text, opaque)
    assert "is rate limited" in str(caught.value)


async def test_a_secret_at_the_cut_of_a_long_error_body_does_not_leak_its_head(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio], api_key: str, token: str
) -> None:
    # Plain-text error bodies are shortened for the message. A secret that straddles the cut must not leave
    # everything but its last characters behind.
    client = make_client(max_retries=0)
    for secret in (api_key, token):
        padding = "x" * (200 - len(secret) + 3)
        api.post(GS.TASK_INFO_PATH).respond(500, text=f"{padding}{secret} and more text after it")
        with pytest.raises(InternalServerError) as caught:
            await client.get_task("cft-1")
        for text in texts_of(caught.value):
            assert_no_secret(text, api_key, token)


async def test_client_repr_shows_only_a_key_prefix(api_key: str) -> None:
    async with AsyncGenStudio(api_key, base_url="https://genstudio.test") as client:
        text = repr(client)
    assert_no_secret(text, api_key)
    assert api_key[:VISIBLE] in text
    assert "https://genstudio.test" in text


def test_submission_shows_only_a_token_prefix(token: str) -> None:
    submission = Submission(prompt_id="cft-secret", prompt_token=token)
    for text in (repr(submission), str(submission), f"{submission!r}", repr([submission]), repr({"s": submission})):
        assert_no_secret(text, token)
        assert "cft-secret" in text


def test_connection_error_message_with_a_bearer_header_is_redacted(api_key: str) -> None:
    redact = Redactor([api_key])
    text = redact(f"Authorization: Bearer {api_key}; url=wss://h/p?authorization=abc.def.ghi-123456&x=1")
    assert_no_secret(text, api_key, "abc.def.ghi-123456")
    assert "Bearer" in text and "authorization=" in text


@pytest.mark.parametrize(
    ("secret", "shown"),
    [("sk-abcdefghijklmnopqrstuvwxyz", "sk-abc…"), ("short-secret", "sh…"), ("", "<none>"), (None, "<none>")],
)
def test_mask_shows_a_short_prefix(secret: str | None, shown: str) -> None:
    assert mask(secret) == shown


async def test_authentication_error_does_not_echo_the_key(
    api: respx.MockRouter, client: AsyncGenStudio, api_key: str
) -> None:
    api.post(GS.TASK_INFO_PATH).respond(401, json={"code": 401, "msg": f"invalid api key {api_key}"})
    with pytest.raises(AuthenticationError) as caught:
        await client.get_tasks(["cft-1"])
    for text in texts_of(caught.value):
        assert_no_secret(text, api_key)
    assert "invalid api key sk-tes…" in str(caught.value)


async def test_connection_error_does_not_echo_the_key(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio], api_key: str
) -> None:
    api.post(GS.CANCEL_PATH).mock(side_effect=httpx.ConnectError(f"CONNECT rejected, header was Bearer {api_key}"))
    client = make_client(max_retries=0)
    with pytest.raises(APIConnectionError) as caught:
        await client.cancel("cft-1")
    for text in texts_of(caught.value):
        assert_no_secret(text, api_key)


def test_bearer_redaction_keeps_the_punctuation_around_it() -> None:
    from genstudio_async._redact import Redactor

    text = Redactor()("refused (Authorization: Bearer sk-abcdefghijklmnopqrstuvwxyz) [code=401]")
    assert "abcdefghijklmnopqrstuvwxyz" not in text
    assert text.endswith(") [code=401]")


def test_a_secret_that_begins_with_another_is_masked_whole() -> None:
    from genstudio_async._redact import Redactor

    redact = Redactor(["sk-emulator"])
    redact.add("sk-emulator-secret-0123456789")
    assert "0123456789" not in redact("key=sk-emulator-secret-0123456789")


async def test_secrets_echoed_anywhere_in_an_error_answer_are_masked_everywhere_it_lands(
    api: respx.MockRouter,
    make_client: Callable[..., AsyncGenStudio],
    api_key: str,
    token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="genstudio_async")
    client = make_client(max_retries=0)
    echo = f"key {api_key} token {token}"
    api.post(GS.SUBMIT_PATH).mock(
        side_effect=[
            httpx.Response(200, json={"code": 0, "data": {"prompt_id": "cft-1", "prompt_token": token}}),
            # The secrets in the message, the traceid, the data and a key of the body.
            httpx.Response(
                200, json={"code": 3, "msg": echo, "traceid": f"tr-{api_key}", "data": {"echo": [echo], echo: 1}}
            ),
            httpx.Response(401, json={"code": 401, "message": echo, "traceid": token, "detail": {"seen": echo}}),
            httpx.Response(503, json={"code": 503, "msg": "busy", "trace_id": api_key, "data": echo}),
        ]
    )
    submission = await client.submit("wf-1")
    errors: list[GenStudioError] = []
    for _ in range(3):
        with pytest.raises(GenStudioError) as caught:
            await client.submit("wf-1")
        errors.append(caught.value)
    assert [type(error).__name__ for error in errors] == ["APIError", "AuthenticationError", "InternalServerError"]
    # A failed task whose errMsg echoes them: the error, its info and the last event all masked.
    failed = {"comfy_task_id": "cft-1", "status": 4, "errMsg": f"node 3 crashed: {echo}"}
    api.post(GS.TASK_INFO_PATH).respond(json={"code": 0, "data": {"comfy_task_info": [failed]}})
    with pytest.raises(GenStudioError) as caught:
        await client.wait("cft-1")
    errors.append(caught.value)
    assert type(caught.value).__name__ == "TaskFailedError"
    info = await client.get_task(submission)
    for text in [caplog.text, info.model_dump_json(), *(t for error in errors for t in texts_of(error))]:
        assert_no_secret(text, api_key, token)
    assert "node 3 crashed" in str(errors[-1])  # the server's words around the secrets survive
    assert errors[0].traceid is not None and errors[0].traceid.startswith("tr-")  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad_key", ["sk-good\nInjected: yes", "sk-with\rcr", "sk-nul\x00x", "sk with space", "sk-é"])
async def test_a_key_that_cannot_be_a_header_is_refused_when_the_client_is_built(bad_key: str) -> None:
    from genstudio_async import ConfigurationError

    with pytest.raises(ConfigurationError) as caught:
        AsyncGenStudio(bad_key, base_url="https://genstudio.test")
    for text in texts_of(caught.value):
        assert bad_key not in text and bad_key[3:] not in text
    assert "position" in str(caught.value)


async def test_a_key_from_the_environment_that_cannot_be_a_header_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from genstudio_async import ConfigurationError

    monkeypatch.setenv(GS.ENV_API_KEY, "sk-pasted-with\na-newline")
    with pytest.raises(ConfigurationError, match=GS.ENV_API_KEY):
        AsyncGenStudio(base_url="https://genstudio.test")


_ECHO_KEY = "sk-emulator-key-for-the-echo-test-0123456789"


@pytest.mark.genstudio_emulator(api_key=_ECHO_KEY)
async def test_a_key_echoed_in_a_socket_frame_is_masked_in_every_event(genstudio_emulator: Any) -> None:
    from genstudio_async import TaskFailedError
    from genstudio_async.emulator import Faults

    key = _ECHO_KEY
    genstudio_emulator.set_faults(Faults(fail_tasks=f"invalid credential {key}"))
    async with genstudio_emulator.client() as client:
        sub = await client.submit("wf-c73diz7kadp6ffgn")
        events = [event async for event in client.stream(sub)]
        with pytest.raises(TaskFailedError) as caught:
            await client.wait(sub)
    assert any(event.source == "websocket" for event in events)
    assert events[-1].error_message is not None and "invalid credential" in events[-1].error_message
    for text in [*(event.model_dump_json() for event in events), *texts_of(caught.value)]:
        assert_no_secret(text, key)


async def test_extra_fields_of_a_task_are_masked_too(
    api: respx.MockRouter, client: AsyncGenStudio, api_key: str
) -> None:
    entry = {"comfy_task_id": "cft-1", "status": 2, "detail": f"request had Authorization: {api_key}",
             "nested": {"seen": [api_key]}, "count": 3}
    api.post(GS.TASK_INFO_PATH).respond(json={"code": 0, "data": {"comfy_task_info": [entry]}})
    info = await client.get_task("cft-1")
    assert info.model_extra is not None and info.model_extra["count"] == 3
    assert_no_secret(repr(info.model_extra) + info.model_dump_json(), api_key)
    assert "request had Authorization" in info.model_extra["detail"]


async def test_a_token_of_a_rebuilt_submission_is_masked_when_the_server_echoes_it(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio]
) -> None:
    from genstudio_async import TaskFailedError

    opaque = "opaque-token-ZYXWVUT987654321"  # not JWT-shaped: only knowing it lets it be masked
    rebuilt = Submission(prompt_id="cft-1", prompt_token=opaque)  # as a batch resumes it from its journal
    failed = {"comfy_task_id": "cft-1", "status": 4, "errMsg": f"token {opaque} rejected"}
    api.post(GS.TASK_INFO_PATH).respond(json={"code": 0, "data": {"comfy_task_info": [failed]}})
    client = make_client(use_websocket=False, poll_interval=0.01)
    with pytest.raises(TaskFailedError) as caught:
        await client.wait(rebuilt)
    for text in texts_of(caught.value):
        assert_no_secret(text, opaque)
    assert "rejected" in str(caught.value)


# --- hostile sizes: what an error keeps of a huge body ---------------------------------------------------------


def test_secrets_that_overlap_in_a_text_are_masked_as_one() -> None:
    earlier = "HEADHEADxyzabcdefgh"  # ends where the later one begins, by more than a mask shows
    later = "abcdefgh0123456789012345"  # longer: masked first one by one, it left HEADHEADxyz in the clear
    text = Redactor([earlier, later])(f"echo {earlier}0123456789012345 end")
    assert_no_secret(text, earlier, later)
    assert text.startswith("echo HEADHE…") and text.endswith(" end")


def test_every_remembered_token_is_masked_however_many_were_added() -> None:
    redact = Redactor(["sk-pinned-key-0123456789"])
    tokens = [f"opaque-token-{index:04d}-{'x' * 40}" for index in range(300)]
    for token in tokens:
        redact.add(token)
    remembered = tokens[-C.MAX_REMEMBERED_SECRETS :]
    for token in (remembered[0], remembered[100], tokens[-1]):
        assert_no_secret(redact(f"[{token}]"), token)
    assert_no_secret(redact("key sk-pinned-key-0123456789"), "sk-pinned-key-0123456789")
    # Secrets that begin with one another nest no deeper in the pattern than it can take.
    nested = Redactor()
    for length in range(1, 301):
        nested.add("q" * length)
    assert nested("<" + "q" * 400 + ">") == "<qqqqqq…>"


async def test_a_huge_error_body_is_kept_only_as_a_small_excerpt(
    api: respx.MockRouter, client: AsyncGenStudio, api_key: str, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # r15: 2 million short strings within the 16 MB cap; every one was redacted (11.7 s with 256 tokens known).
    for index in range(C.MAX_REMEMBERED_SECRETS):
        client._redact.add(f"opaque-{index:06d}-token-abcdefghijkl")
    body = {"code": 1, "msg": f"no: {token}", "traceid": "tr-1", "data": [f"key {api_key}"] + ["a"] * 2_000_000}
    api.post(GS.TASK_INFO_PATH).respond(200, json=body)
    redacted = 0
    original = Redactor.__call__

    def counted(self: Redactor, text: str) -> str:
        nonlocal redacted
        redacted += 1
        return original(self, text)

    monkeypatch.setattr(Redactor, "__call__", counted)
    with pytest.raises(APIError) as caught:
        await client.get_task("cft-1")
    error = caught.value
    assert (error.code, error.traceid) == (1, "tr-1") and error.message == f"no: {mask(token)}"
    assert redacted <= 2_000  # the excerpt's strings, not two million
    kept = json.dumps(error.body)
    assert len(kept) < 16 * 1024
    assert error.body["data"][0] == f"key {mask(api_key)}" and error.body["data"][-1] == "…"
    for text in texts_of(error):
        assert_no_secret(text, api_key, token)


async def test_a_status_error_keeps_a_small_excerpt_of_a_huge_body(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio], api_key: str
) -> None:
    client = make_client(max_retries=0)
    body = {"code": 500, "msg": "busy", **{f"field-{index}": [api_key, {"deep": "x" * 50}] for index in range(100_000)}}
    api.post(GS.TASK_INFO_PATH).respond(500, json=body)
    with pytest.raises(InternalServerError) as caught:
        await client.get_task("cft-1")
    error = caught.value
    assert (error.message, error.code) == ("busy", 500)
    assert len(error.body) <= 1_000 and error.body["…"] == "…"
    assert len(json.dumps(error.body)) < 32 * 1024
    for text in texts_of(error):
        assert_no_secret(text, api_key)


async def test_a_secret_at_the_cut_of_a_long_string_in_a_body_is_masked_whole(
    api: respx.MockRouter, make_client: Callable[..., AsyncGenStudio], api_key: str, token: str
) -> None:
    client = make_client(max_retries=0)
    cut, margin = 2_000, 256  # C.ERROR_BODY_MAX_STRING_CHARS, C.REDACT_CUT_MARGIN (checked below)
    straddling = {
        secret: "x" * (cut - len(secret) // 2) + secret + " and on" * 10_000 for secret in (api_key, token)
    }
    # Where the redacted part of a long string ends, a secret is cut in two and left unmasked: what masking shrank
    # before it must not pull its head back inside the cut.
    shrinking = f"{api_key} " * 40
    window_end = shrinking + "y" * (cut + 2 * margin - len(shrinking) - 9) + api_key + "z" * 10_000
    for secret in (api_key, token):
        api.post(GS.TASK_INFO_PATH).respond(
            200, json={"code": 7, "msg": straddling[secret], "data": {"detail": straddling[secret], "end": window_end}}
        )
        with pytest.raises(APIError) as caught:
            await client.get_task("cft-1")
        error = caught.value
        assert len(error.message) <= cut + 1 and error.message.endswith("…")
        assert len(error.body["data"]["detail"]) <= cut + 1
        for text in texts_of(error):
            assert_no_secret(text, api_key, token)
    assert (cut, margin) == (C.ERROR_BODY_MAX_STRING_CHARS, C.REDACT_CUT_MARGIN)


def test_an_excerpt_keeps_a_budget_of_values_characters_and_depth() -> None:
    redact = Redactor()
    many = redact.excerpt({f"k{index}": index for index in range(5_000)})
    assert len(many) == C.ERROR_BODY_MAX_VALUES // 2 + 1 and many["…"] == "…"
    assert list(many)[:3] == ["k0", "k1", "k2"]  # the beginning is kept, in order
    wordy = redact.excerpt(["w" * 5_000] * 100)
    assert sum(len(text) for text in wordy) <= C.ERROR_BODY_MAX_CHARS + len(wordy)
    assert wordy[0] == "w" * C.ERROR_BODY_MAX_STRING_CHARS + "…"
    nested: Any = "bottom"
    for _ in range(100):
        nested = [nested]
    deep = redact.excerpt(nested)
    for _ in range(C.ERROR_BODY_MAX_DEPTH):
        deep = deep[0]
    assert deep is None
    small = {"code": 3, "msg": "fine", "data": [1, 2.5, None, True, {"a": "b"}]}
    assert redact.excerpt(small) == small  # an ordinary body is kept as it came


async def test_a_key_in_the_reason_phrase_of_a_bodiless_error_is_masked(
    make_client: Callable[..., AsyncGenStudio], api: respx.MockRouter, api_key: str
) -> None:
    api.post(GS.TASK_INFO_PATH).respond(401, content=b"", extensions={"reason_phrase": f"bad key {api_key}".encode()})
    client = make_client(max_retries=0)
    with pytest.raises(AuthenticationError) as caught:
        await client.get_task("cft-1")
    for text in texts_of(caught.value):
        assert_no_secret(text, api_key)
    assert "bad key" in str(caught.value)


async def test_a_key_echoed_as_a_fields_name_is_masked(
    api: respx.MockRouter, client: AsyncGenStudio, api_key: str
) -> None:
    api.post(GS.TASK_INFO_PATH).respond(
        json={"code": 0, "data": {"comfy_task_info": [{"comfy_task_id": "cft-1", "status": 2, f"echo {api_key}": 1}]}}
    )
    (info,) = await client.get_tasks(["cft-1"])
    for text in (repr(info), info.model_dump_json(), repr(info.model_extra)):
        assert_no_secret(text, api_key)
