"""The storage origin: signed URLs as OSS checks them, XML errors, retention, and no API key ever welcome."""

from __future__ import annotations

import hashlib
from urllib.parse import unquote, urlsplit

import httpx
import pytest

from genstudio_async.emulator import Emulator
from tests.support import decode_png

from .support import Submit, task_info


@pytest.fixture
async def result_url(emu: Emulator, submit: Submit, api: httpx.AsyncClient) -> str:
    """A signed URL of a finished task's image (512×512 by the workflow's defaults)."""
    task_id = (await submit())["prompt_id"]
    await emu.wait_status(task_id, 3)
    url: str = (await task_info(api, task_id))[0]["final_files"][0]
    return url


def assert_oss_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/xml")
    assert f"<Code>{code}</Code>" in response.text and "<RequestId>" in response.text


async def test_a_signed_url_downloads_a_real_png(emu: Emulator, result_url: str, storage: httpx.AsyncClient) -> None:
    response = await storage.get(result_url)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    width, height, _ = decode_png(response.content)
    assert (width, height) == (512, 512)
    digest = hashlib.md5(response.content, usedforsecurity=False).hexdigest().upper()
    assert response.headers["etag"].strip('"') == digest
    assert emu.stats.storage_downloads == 1
    head = await storage.head(result_url)
    assert head.status_code == 200 and int(head.headers["content-length"]) == len(response.content)
    assert emu.stats.storage_downloads == 1


async def test_the_api_key_is_refused_by_the_storage_and_counted(emu: Emulator, result_url: str,
                                                                  storage: httpx.AsyncClient) -> None:
    response = await storage.get(result_url, headers={"Authorization": f"Bearer {emu.api_key}"})
    assert_oss_error(response, 400, "InvalidArgument")
    assert emu.stats.storage_requests_with_authorization == 1 and emu.stats.storage_downloads == 0


async def test_a_percent_decoded_url_is_refused(emu: Emulator, result_url: str, storage: httpx.AsyncClient) -> None:
    assert "%2B" in result_url
    decoded = unquote(result_url)  # what the docs' decodeAndCleanUrl does: "%2B" becomes "+", read as a space
    response = await storage.get(httpx.URL(decoded))
    assert_oss_error(response, 403, "SignatureDoesNotMatch")
    # the key's slashes alone are harmless, as on OSS: only the signature breaks
    path_only = result_url.split("?")[0].replace("%2F", "/") + "?" + result_url.split("?")[1]
    assert (await storage.get(path_only)).status_code == 200


async def test_a_tampered_signature_is_refused(result_url: str, storage: httpx.AsyncClient) -> None:
    base, signature = result_url.split("Signature=")
    tampered = f"{base}Signature={'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    assert_oss_error(await storage.get(tampered), 403, "SignatureDoesNotMatch")
    longer = result_url.replace("Expires=", "Expires=1")
    assert_oss_error(await storage.get(longer), 403, "SignatureDoesNotMatch")
    unsigned = result_url.split("?")[0]
    assert_oss_error(await storage.get(unsigned), 403, "AccessDenied")


async def test_an_expired_url_is_refused_but_a_fresh_one_works(
    emu: Emulator, result_url: str, storage: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    emu.advance_clock(600 + 64 + 1)
    assert_oss_error(await storage.get(result_url), 403, "AccessDenied")
    task_id = urlsplit(result_url).path.split("%2F")[2]
    fresh = (await task_info(api, task_id))[0]["final_files"][0]
    assert (await storage.get(fresh)).status_code == 200


async def test_old_urls_stay_valid_when_new_ones_are_minted(
    emu: Emulator, result_url: str, storage: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    task_id = urlsplit(result_url).path.split("%2F")[2]
    newer = (await task_info(api, task_id, url_expire_period=5))[0]["final_files"][0]
    assert newer != result_url
    assert (await storage.get(result_url)).status_code == 200
    assert (await storage.get(newer)).status_code == 200
    emu.advance_clock(100)  # past the newer URL's own Expires, not the older one's
    assert (await storage.get(newer)).status_code == 403
    assert (await storage.get(result_url)).status_code == 200


async def test_files_are_gone_after_the_retention_period(
    emu: Emulator, result_url: str, storage: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    task_id = urlsplit(result_url).path.split("%2F")[2]
    emu.advance_clock(3 * 24 * 3600 + 1)
    still_signed = (await task_info(api, task_id))[0]["final_files"][0]
    assert_oss_error(await storage.get(still_signed), 404, "NoSuchKey")


@pytest.mark.genstudio_emulator(retention=30)
async def test_retention_is_configurable(emu: Emulator, result_url: str, storage: httpx.AsyncClient) -> None:
    assert (await storage.get(result_url)).status_code == 200
    emu.advance_clock(31)
    assert_oss_error(await storage.get(result_url), 404, "NoSuchKey")


async def test_unknown_objects_are_404_and_the_api_host_serves_no_files(
    emu: Emulator, result_url: str, storage: httpx.AsyncClient
) -> None:
    on_api_host = result_url.replace(emu.storage_url, emu.base_url)
    response = await storage.get(on_api_host)
    assert response.status_code == 404 and response.json()["code"] != 0
    signer = emu.service.signer
    assert signer is not None
    never_made = signer.sign_url("te-emulator/ac-emulator/cft-x/none.png", expires_at=4_000_000_000)
    assert_oss_error(await storage.get(never_made), 404, "NoSuchKey")


async def test_http_faults_reach_downloads_only_when_storage_is_named(
    emu: Emulator, result_url: str, storage: httpx.AsyncClient
) -> None:
    emu.set_faults(http_error_rate=1.0, http_error_status=503)  # the API endpoints, not the storage
    assert (await storage.get(result_url)).status_code == 200
    emu.set_faults(http_error_rate=1.0, http_error_status=503, endpoints={"storage"})
    assert_oss_error(await storage.get(result_url), 503, "InternalError")
    emu.set_faults(http_error_rate=1.0, http_error_status=502, http_error_html=True, endpoints={"storage"})
    page = await storage.get(result_url)
    assert page.status_code == 502 and page.headers["content-type"].startswith("text/html")
    assert emu.stats.http_errors_injected == 2 and emu.stats.requests["storage"] == 3
