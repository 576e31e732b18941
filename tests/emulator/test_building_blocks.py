"""The emulator's small parts on their own: PNG writer, signed URLs, prompt tokens, wire JSON, fault parsing."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from genstudio_async.emulator import FaultError, Faults
from genstudio_async.emulator._defaults import EMULATOR_MAX_IMAGE_SIDE
from genstudio_async.emulator._faults import FaultController, TokenBucket
from genstudio_async.emulator._jwt import TokenError, TokenSigner
from genstudio_async.emulator._png import png_size, render_image
from genstudio_async.emulator._signing import SignatureRejected, UrlSigner
from genstudio_async.emulator._wire import dumps
from tests.support import decode_png


def test_rendered_png_decodes_by_hand_at_the_asked_size() -> None:
    data = render_image(320, 200, seed=7, text="a red fox")
    width, height, raw = decode_png(data)
    assert (width, height) == (320, 200) == png_size(data)
    assert len(set(raw[1 : 1 + 320 * 3])) > 10  # not a flat colour


def test_rendering_is_deterministic_and_differs_per_seed_and_per_text() -> None:
    first = render_image(64, 64, seed=1, text="fox")
    assert render_image(64, 64, seed=1, text="fox") == first
    assert render_image(64, 64, seed=2, text="fox") != first
    assert render_image(64, 64, seed=1, text="owl") != first


def test_absurd_sizes_are_clamped() -> None:
    assert png_size(render_image(0, -5, seed=0, text="")) == (1, 1)
    assert png_size(render_image(16384, 16, seed=0, text="")) == (EMULATOR_MAX_IMAGE_SIDE, 16)


def make_signer(plus_search: int = 64) -> UrlSigner:
    return UrlSigner(
        b"secret", access_key_id="AKID", bucket="bucket", storage_origin="http://127.0.0.1:9", plus_search=plus_search
    )


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def test_signed_url_has_the_oss_shape_and_verifies() -> None:
    signer = make_signer()
    url = signer.sign_url("te-a/ac-b/cft-c/d.png", expires_at=2_000_000_000)
    parts = urlsplit(url)
    assert parts.path == "/te-a%2Fac-b%2Fcft-c%2Fd.png"
    assert list(query_of(url)) == ["Expires", "OSSAccessKeyId", "Signature"]
    assert "%2B" in parts.query  # the signer makes sure the signature holds a "+"
    expires = int(query_of(url)["Expires"])
    assert 2_000_000_000 <= expires < 2_000_000_064
    signer.verify("te-a/ac-b/cft-c/d.png", query_of(url), now=2_000_000_000)


def test_the_signature_is_base64_hmac_sha1_percent_encoded() -> None:
    url = make_signer(plus_search=1).sign_url("k.png", expires_at=100)
    signature = query_of(url)["Signature"]
    assert len(base64.b64decode(signature)) == 20
    assert url.endswith(f"Signature={signature.replace('+', '%2B').replace('/', '%2F').replace('=', '%3D')}")


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        (lambda q: {**q, "Signature": q["Signature"][:-2] + "AA"}, "SignatureDoesNotMatch"),
        (lambda q: {**q, "Signature": q["Signature"].replace("+", " ")}, "SignatureDoesNotMatch"),
        (lambda q: {**q, "Expires": str(int(q["Expires"]) + 1)}, "SignatureDoesNotMatch"),
        (lambda q: {**q, "OSSAccessKeyId": "other"}, "InvalidAccessKeyId"),
        (lambda q: {k: v for k, v in q.items() if k != "Signature"}, "AccessDenied"),
        (lambda q: {**q, "x-oss-process": "image/format,png"}, "SignatureDoesNotMatch"),
    ],
)
def test_tampered_queries_are_refused(tamper: object, code: str) -> None:
    signer = make_signer()
    query = query_of(signer.sign_url("k.png", expires_at=2_000_000_000))
    with pytest.raises(SignatureRejected) as caught:
        signer.verify("k.png", tamper(query), now=1_000)  # type: ignore[operator]
    assert caught.value.code == code


def test_expired_url_and_signed_process_parameter() -> None:
    signer = make_signer()
    url = signer.sign_url("k.png", expires_at=1_000, process="image/format,jpg/quality,q_80")
    assert urlsplit(url).query.startswith("Expires=")
    assert urlsplit(url).query.endswith("&x-oss-process=image%2Fformat%2Cjpg%2Fquality%2Cq_80")
    query = query_of(url)
    signer.verify("k.png", query, now=999)
    with pytest.raises(SignatureRejected, match="expired"):
        signer.verify("k.png", query, now=int(query["Expires"]) + 1)


def test_prompt_tokens_carry_the_services_claims_and_refuse_forgery() -> None:
    signer = TokenSigner(b"k1", issuer="infini")
    token = signer.mint(tenant_id="te-x", task_id="cft-1", expires_at=2_000)
    header_b64, claims_b64, _ = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(header_b64 + "==")) == {"alg": "HS256", "typ": "JWT"}
    claims = json.loads(base64.urlsafe_b64decode(claims_b64 + "=="))
    assert claims == {"tenant_id": "te-x", "task_id": "cft-1", "iss": "infini", "exp": 2_000}
    assert signer.verify(token, now=1_999).task_id == "cft-1"
    for bad, reason in [
        (token, "expired"),
        (TokenSigner(b"other", issuer="infini").mint(tenant_id="te-x", task_id="cft-1", expires_at=9_999), "signature"),
        ("not-a-jwt", "compact"),
        (token.rsplit(".", 1)[0] + ".", "signature"),
        ("e30.e30.", "HS256"),
    ]:
        with pytest.raises(TokenError, match=reason):
            signer.verify(bad, now=2_000 if bad is token else 0)


def test_wire_json_escapes_ampersands_like_the_services_encoder() -> None:
    text = dumps({"url": "a?x=1&y=2", "html": "<b>", "cn": "麦橘写实"})
    assert text == '{"url":"a?x=1\\u0026y=2","html":"\\u003cb\\u003e","cn":"麦橘写实"}'
    assert "&" not in text and json.loads(text)["url"] == "a?x=1&y=2"
    assert json.loads(dumps({"s": "back\\&slash"}))["s"] == "back\\&slash"


def test_faults_parse_from_command_line_assignments() -> None:
    wide, per_workflow = Faults.from_assignments(
        ["ws_drop_after=2", "http_error_rate=0.25", "endpoints=submit,task_info", "ws_junk=yes",
         "wf-a:fail_tasks=CUDA out of memory: boom", "wf-a:deny_tasks=false", "rate_limit=none"]
    )
    assert wide == Faults(ws_drop_after=2, http_error_rate=0.25, endpoints=frozenset({"submit", "task_info"}),
                          ws_junk=True)
    assert per_workflow == {"wf-a": Faults(fail_tasks="CUDA out of memory: boom")}
    assert Faults.from_mapping({"delay": 0.5, "endpoints": ["cancel"]}).as_dict()["endpoints"] == ["cancel"]


@pytest.mark.parametrize(
    "assignment",
    ["nonsense=1", "ws_drop_after=two", "http_error_rate=2", "http_error_status=404", "endpoints=everything",
     "ws_refuse_status=200", "no_equals_sign", "ws_silent=maybe", "rate_limit=0"],
)
def test_bad_fault_assignments_are_refused_with_the_name(assignment: str) -> None:
    with pytest.raises(FaultError):
        Faults.from_assignments([assignment])


def test_error_draws_are_seeded_and_scoped_to_endpoints() -> None:
    def draws(seed: int) -> list[int | None]:
        controller = FaultController(Faults(http_error_rate=0.5, http_error_status=503, seed=seed,
                                            endpoints=frozenset({"submit"})))
        return [controller.draw_http_fault("submit").status for _ in range(40)]

    assert draws(3) == draws(3)
    assert draws(3) != draws(4)
    assert set(draws(3)) == {None, 503}
    controller = FaultController(Faults(http_error_rate=1.0, endpoints=frozenset({"submit"})))
    assert controller.draw_http_fault("task_info").status is None


def test_workflow_faults_replace_the_emulator_wide_ones() -> None:
    controller = FaultController(Faults(ws_junk=True))
    controller.set_for_workflow("wf-a", Faults(deny_tasks=True))
    assert controller.for_workflow("wf-a") == Faults(deny_tasks=True)
    assert controller.for_workflow("wf-b") == Faults(ws_junk=True)
    controller.set_for_workflow("wf-a", None)
    assert controller.for_workflow("wf-a") == Faults(ws_junk=True)


def test_token_bucket_allows_a_burst_then_says_how_long_to_wait() -> None:
    bucket = TokenBucket(rate=0.5, burst=2)
    assert bucket.take() is None and bucket.take() is None
    wait = bucket.take()
    assert wait is not None and 1.9 < wait <= 2.0


def test_unquote_of_a_signature_is_what_breaks_clients() -> None:
    url = make_signer().sign_url("k.png", expires_at=2_000_000_000)
    decoded_query = unquote(urlsplit(url).query)
    assert "+" in decoded_query  # what a decoding client would send, and OSS reads "+" as a space
