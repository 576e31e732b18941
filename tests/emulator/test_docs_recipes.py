"""The service docs' own recipes, run against the emulator unchanged but for the host (and ws:// for wss://).

- the API guide's curl commands (submit, get_task_info, multipart upload), with the real ``curl`` binary;
- the Python tutorial's synchronous polling loop (``httpx`` in place of ``requests``, same logic);
- the API guide's browser WebSocket code, run under Node;
- GPUGeek's API doc: its Python upload sample (``requests``, run in a child process), then its prompt request
  body and task polling.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest

from genstudio_async._services import gpugeek as G
from genstudio_async.emulator import Emulator
from genstudio_async.emulator._png import render_image
from tests.support import decode_png, eventually

from .support import I2I, T2I, TUTORIAL, Submit

CURL = shutil.which("curl")
NODE = shutil.which("node")

GUIDE_T2I_BODY = """{
    "workflow_id": "wf-c73diz7kadp6ffgn",
    "prompt": {
      "3": {
        "inputs": {
          "seed": 423710630168223,
          "steps": 20,
          "cfg": 7,
          "sampler_name": "ddim",
          "scheduler": "karras",
          "denoise": 1
        }
      },
      "4": {
        "inputs": {
          "ckpt_name": "majicMIX realistic 麦橘写实_v7.safetensors"
        }
      },
      "5": {
        "inputs": {
          "width": 512,
          "height": 512,
          "batch_size": 1
        }
      },
      "6": {
        "inputs": {
          "text": "Rabbit in a red suit standing in middle of a crowded place, skyscrapers in the background, cinematic, neon colors, realistic look"
        }
      },
      "7": {
        "inputs": {
          "text": "ugly, deformed"
        }
      }
    }
  }"""  # noqa: E501 (the guide's text as it is)

GUIDE_TASK_INFO_BODY = """{
  "comfy_task_ids": [
    "cft-c73egpxvlvg76yjd"
  ],
  "url_expire_period": 1000
}"""

GUIDE_I2I_BODY = """{
    "workflow_id": "wf-c73epllu4i3bxvzr",
    "prompt": {
      "3": {
        "inputs": {
          "seed": 423710630168223,
          "steps": 30,
          "cfg": 9,
          "sampler_name": "ddim",
          "scheduler": "karras",
          "denoise": 0.6
        }
      },
      "4": {
        "inputs": {
          "ckpt_name": "majicMIX realistic 麦橘写实_v7.safetensors"
        }
      },
      "6": {
        "inputs": {
          "text": "Spiderwoman dressed entirely in monochromatic, pure black suit standing in middle of a crowded place, skyscrapers in the background, cinematic, neon colors, realistic look"
        }
      },
      "7": {
        "inputs": {
          "text": "ugly, deformed, red, reddish, blue"
        }
      },
      "10": {
        "inputs": {
          "image": "te-b905754427352261/ac-c66h4ddlwutmbinv/sui-c73eqoorz56qaq7q.png"
        }
      }
    }
  }"""  # noqa: E501 (the guide's text as it is)


async def run(*argv: str, timeout: float = 20) -> str:
    """Run a program to completion (without blocking the loop the emulator runs on); return its stdout."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_PROXY": "*"}
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode == 0, stderr.decode(errors="replace")
    return stdout.decode()


async def curl_json(emu: Emulator, path: str, *options: str) -> dict[str, Any]:
    """The guide's curl command for ``path``, with its headers, then ``options`` (``--data``, ``--form``)."""
    assert CURL is not None
    output = await run(
        CURL, "--silent", "--show-error", "--request", "POST",
        "--url", f"{emu.base_url}{path}",
        "--header", "Accept: application/json",
        "--header", f"Authorization: Bearer {emu.api_key}",
        *options,
    )
    envelope: dict[str, Any] = json.loads(output)
    return envelope


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
async def test_the_guides_curl_commands_work(emu: Emulator, tmp_path: Path) -> None:
    submitted = await curl_json(
        emu, "/api/maas/comfy_task_api/prompt", "--header", "Content-Type: application/json", "--data", GUIDE_T2I_BODY
    )
    assert submitted["code"] == 0 and submitted["msg"] == "Success"
    prompt_id = submitted["data"]["prompt_id"]
    await emu.wait_status(prompt_id, 3)

    body = GUIDE_TASK_INFO_BODY.replace("cft-c73egpxvlvg76yjd", prompt_id)
    info = await curl_json(
        emu, "/api/maas/comfy_task_api/get_task_info", "--header", "Content-Type: application/json", "--data", body
    )
    task = info["data"]["comfy_task_info"][0]
    assert (task["comfy_task_id"], task["status"], task["progress_num"]) == (prompt_id, 3, 100)
    assert list(task["files"]) == ["9"]

    image = tmp_path / "spiderman-in-red-suit.png"
    image.write_bytes(render_image(96, 64, seed=1, text="spiderman"))
    uploaded = await curl_json(
        emu, "/api/maas/comfy_task_api/upload/image",
        "--header", "Content-Type: multipart/form-data", "--form", f"source_file=@{image}",
    )
    image_id = uploaded["data"]["image_id"]
    assert image_id.startswith("te-emulator/ac-emulator/sui-") and image_id.endswith(".png")

    i2i_body = GUIDE_I2I_BODY.replace("te-b905754427352261/ac-c66h4ddlwutmbinv/sui-c73eqoorz56qaq7q.png", image_id)
    i2i = await curl_json(
        emu, "/api/maas/comfy_task_api/prompt", "--header", "Content-Type: application/json", "--data", i2i_body
    )
    done = await emu.wait_status(i2i["data"]["prompt_id"], 3)
    assert CURL is not None
    downloaded = tmp_path / "spiderwoman-in-black-suit.png"
    await run(CURL, "--silent", "--show-error", "--fail", "-o", str(downloaded), done["final_files"][0])
    assert decode_png(downloaded.read_bytes())[:2] == (96, 64)


def tutorial_polling_loop(server: str, api_key: str, workflow_id: str, prompt: dict[str, Any] | None,
                          output_path: str) -> str:
    """The tutorial's queue_prompt / get_task_info / get_images / save_images and its loop, with httpx."""
    def queue_prompt(workflow_id: str, prompt: dict[str, Any] | None) -> Any:
        url = f"{server}/api/maas/comfy_task_api/prompt"
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
        payload = {"workflow_id": workflow_id, "prompt": prompt}
        response = httpx.post(url, headers=headers, json=payload)
        response.raise_for_status()
        return response.json()

    def get_task_info(prompt_ids: list[str], url_expire_period: int = 3600) -> Any:
        url = f"{server}/api/maas/comfy_task_api/get_task_info"
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"}
        payload = {"comfy_task_ids": prompt_ids, "url_expire_period": url_expire_period}
        response = httpx.post(url, headers=headers, json=payload)
        response.raise_for_status()
        return response.json()

    def get_images(files_dict: dict[str, list[str]]) -> list[dict[str, Any]]:
        output_images = []
        for key, urls in files_dict.items():
            for url in urls:
                response = httpx.get(url)
                response.raise_for_status()
                file_name = os.path.basename(urlparse(url).path.split("?")[0])
                output_images.append({"file_name": file_name, "image_data": response.content, "type": "output",
                                      "key": key})
        return output_images

    def save_images(images: list[dict[str, Any]], output_path: str) -> None:
        for item in images:
            directory = os.path.join(output_path, item["key"])
            os.makedirs(directory, exist_ok=True)
            with open(os.path.join(directory, item["file_name"]), "wb") as file:  # the tutorial uses PIL here
                file.write(item["image_data"])

    response = queue_prompt(workflow_id, prompt)
    prompt_id: str = response["data"]["prompt_id"]
    while True:
        task_info = get_task_info([prompt_id])
        if task_info["code"] != 0:
            raise RuntimeError(f"获取任务信息失败: {task_info['msg']}")
        comfy_task_info = task_info["data"]["comfy_task_info"][0]
        status = comfy_task_info["status"]
        if status == 3:
            break
        elif status == 4:
            raise RuntimeError(f"任务失败: {comfy_task_info['errMsg']}")
        time.sleep(0.05)  # the tutorial waits 5 s
    files_dict = comfy_task_info.get("files", {})
    save_images(get_images(files_dict), output_path)
    return prompt_id


async def test_the_tutorials_polling_loop_reaches_status_3_and_downloads(emu: Emulator, tmp_path: Path) -> None:
    emu.set_timing(steps=5, step_seconds=0.03)
    prompt = {
        "3": {"inputs": {"seed": 423710630168223, "steps": 20, "cfg": 7, "sampler_name": "ddim",
                         "scheduler": "karras", "denoise": 1}},
        "4": {"inputs": {"ckpt_name": "common/sd1.5/majicMIX realistic 麦橘写实_v7.safetensors"}},
        "5": {"inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"inputs": {"text": "Spiderman in a red suit standing in middle of a crowded place"}},
        "7": {"inputs": {"text": "ugly, deformed"}},
    }
    prompt_id = await asyncio.to_thread(
        tutorial_polling_loop, emu.base_url, emu.api_key, TUTORIAL, prompt, str(tmp_path)
    )
    saved = list((tmp_path / "9").iterdir())
    assert len(saved) == 1 and saved[0].name.startswith(f"te-emulator%2Fac-emulator%2F{prompt_id}%2F")
    assert decode_png(saved[0].read_bytes())[:2] == (512, 512)
    assert emu.stats.storage_downloads == 1 and emu.stats.storage_requests_with_authorization == 0


async def test_the_tutorials_loop_sees_status_4(emu: Emulator, tmp_path: Path) -> None:
    emu.set_faults(fail_tasks="节点执行失败")
    with pytest.raises(RuntimeError, match="任务失败: 节点执行失败"):
        await asyncio.to_thread(tutorial_polling_loop, emu.base_url, emu.api_key, T2I, None, str(tmp_path))


GUIDE_WS_JS = r"""
const promptToken = "your_prompt_token_here"; // 替换为实际的 prompt_token
const socket = new WebSocket(
  `wss://cloud.infini-ai.com/api/maas/comfy_task_ws_api/get_task_progress?authorization=${promptToken}`
);

socket.onopen = () => {
  console.log("WebSocket 连接已建立");
  // 连接建立后，服务器会自动开始推送该 token 对应任务的进度更新
};

socket.onerror = (error) => {
  console.error("WebSocket 错误:", error);
};

socket.onclose = (event) => {
  console.log("WebSocket 连接已关闭:", event.code, event.reason);
  // 注意：任务完成或失败后，服务器可能会主动关闭连接
};

socket.onmessage = (event) => {
  try {
    const data = JSON.parse(event.data);
    if (data.comfy_task_info) {
      const taskInfo = data.comfy_task_info;

      // 显示任务进度和状态
      displayTaskProgress(taskInfo);

      // 当任务成功完成时，处理最终文件
      if (taskInfo.status === 3 && taskInfo.progress_num === 100) {
        console.log("任务成功完成，处理最终结果文件:");
        if (taskInfo.final_files && taskInfo.final_files.length > 0) {
          // 解码并显示最终结果图片
          displayResultFiles(
            taskInfo.final_files.map(decodeAndCleanUrl),
            "final-results"
          );
        } else if (taskInfo.files) {
          // 如果 final_files 为空但 files 有内容，可能需要根据节点 ID 处理 files
          console.warn("final_files 为空，尝试从 files 获取结果...");
          // Example: Process files from a specific node ID like '9'
          const outputNodeId = "9"; // Change this based on your workflow's output node
          if (taskInfo.files[outputNodeId]) {
            displayResultFiles(
              taskInfo.files[outputNodeId].map(decodeAndCleanUrl),
              "final-results"
            );
          }
        }
      }
      // (可选) 如果需要实时预览，可以处理 files 字段
      // else if (taskInfo.status === 2 && taskInfo.files) { ... }
    } else {
      console.log("收到非任务进度消息:", data);
    }
  } catch (e) {
    console.error("处理 WebSocket 消息失败:", e, "原始数据:", event.data);
  }
};

function displayTaskProgress(taskInfo) {
  const progressElement = document.getElementById("task-progress"); // Assume you have an element with this ID
  if (!progressElement) return;
  progressElement.innerHTML = `
    <p>任务ID: ${taskInfo.comfy_task_id}</p>
    <p>状态: ${getStatusText(taskInfo.status)}</p>
    <p>进度: ${taskInfo.progress_num}%</p>
    <p>队列位置: ${
      taskInfo.current_position > 0
        ? taskInfo.current_position + " / " + taskInfo.queue_size
        : "N/A"
    }</p>
    ${
      taskInfo.errMsg
        ? `<p style="color: red;">错误: ${taskInfo.errMsg}</p>`
        : ""
    }
  `;
}

function getStatusText(status) {
  const statusMap = {
    1: "排队中",
    2: "生成中",
    3: "生成成功",
    4: "生成失败或用户已取消任务",
    5: "权限不足",
  };
  return statusMap[status] || "未知状态";
}

function displayResultFiles(fileUrls, containerId) {
  const filesElement = document.getElementById(containerId); // Assume you have an element for results
  if (!filesElement) return;
  filesElement.innerHTML = ""; // Clear previous results for this container
  fileUrls.forEach((url) => {
    const img = document.createElement("img");
    img.src = url;
    img.alt = "结果图片";
    img.style.maxWidth = "200px"; // Example styling
    img.style.margin = "5px";
    filesElement.appendChild(img);
  });
}

// 直接返回的 OSS 链接可能包含 \u 或 % 编码，请解码后使用。
function decodeAndCleanUrl(url) {
  try {
    // First, decode URI components like %2F, %3D etc.
    let decodedUrl = decodeURIComponent(url);
    // Then, replace JSON string unicode escapes like \u0026
    decodedUrl = decodedUrl.replace(/\\u([\dA-F]{4})/gi, (match, grp) =>
      String.fromCharCode(parseInt(grp, 16))
    );
    return decodedUrl;
  } catch (e) {
    console.error("URL 解码失败:", e, "原始 URL:", url);
    return url; // Return original URL if decoding fails
  }
}
"""

# A stand-in for the browser page the guide's code expects: elements that record what they are shown.
PAGE_SHIM = r"""
const shown = { progress: [], images: [] };
globalThis.document = {
  getElementById(id) {
    if (id === "task-progress") {
      return { set innerHTML(html) { shown.progress.push(html.replace(/\s+/g, " ").trim()); } };
    }
    return { innerHTML: "", appendChild(img) { shown.images.push(img.src); } };
  },
  createElement() { return { style: {} }; },
};
process.on("exit", () => { console.log("SHOWN " + JSON.stringify(shown)); });
"""


async def node_websocket_flags() -> list[str] | None:
    """The node flags that give a global WebSocket (none on Node 22+), or None if this node has none."""
    if NODE is None:
        return None
    for flags in ([], ["--experimental-websocket"]):
        try:
            output = await run(NODE, *flags, "-e", "console.log(typeof WebSocket)", timeout=15)
        except AssertionError:
            continue
        if output.strip() == "function":
            return flags
    return None


@pytest.mark.skipif(NODE is None, reason="node is not installed")
async def test_the_guides_browser_websocket_code_runs_under_node(
    emu: Emulator, submit: Submit, tmp_path: Path, storage: httpx.AsyncClient
) -> None:
    flags = await node_websocket_flags()
    if flags is None:
        pytest.skip("this node has no WebSocket")
    assert NODE is not None
    emu.set_timing(steps=4, step_seconds=0.05)
    emu.pause()
    task = await submit()
    code = GUIDE_WS_JS.replace("your_prompt_token_here", task["prompt_token"]).replace(
        "wss://cloud.infini-ai.com", emu.ws_url
    )
    script = tmp_path / "guide.mjs"
    script.write_text(PAGE_SHIM + code, encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        NODE, *flags, str(script), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    await emu.wait_status(task["prompt_id"], 1)
    await eventually(lambda: emu.stats.ws_connections_open == 1 or process.returncode is not None)
    emu.resume()
    stdout, stderr = await asyncio.wait_for(process.communicate(), 20)
    output = stdout.decode()
    assert process.returncode == 0, stderr.decode()
    assert "WebSocket 连接已建立" in output
    assert "任务成功完成，处理最终结果文件:" in output
    assert "WebSocket 连接已关闭: 1000" in output
    assert "处理 WebSocket 消息失败" not in stderr.decode()
    shown = json.loads(output.split("SHOWN ", 1)[1])
    assert any("状态: 排队中" in html and "队列位置: 1 / 1" in html for html in shown["progress"])
    assert any("状态: 生成成功" in html and "进度: 100%" in html for html in shown["progress"])
    assert len(shown["images"]) == 1
    # The guide's decodeAndCleanUrl percent-decodes the signed URL: the "%2B" of the signature turns into "+",
    # which storage reads as a space. The emulator, like OSS, refuses it: the trap this SDK avoids.
    decoded_url = shown["images"][0]
    assert "+" in decoded_url.split("Signature=")[1]
    assert (await storage.get(httpx.URL(decoded_url))).status_code == 403
    raw_url = (await emu.wait_status(task["prompt_id"], 3))["final_files"][0]
    assert (await storage.get(raw_url)).status_code == 200


async def test_the_guides_i2i_submit_names_the_never_uploaded_image(emu: Emulator) -> None:
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(
            f"{emu.base_url}/api/maas/comfy_task_api/prompt",
            headers={"Authorization": f"Bearer {emu.api_key}", "Content-Type": "application/json"},
            content=GUIDE_I2I_BODY.encode(),
        )
    envelope = response.json()
    assert envelope["code"] != 0 and "sui-c73eqoorz56qaq7q.png" in envelope["msg"] and I2I in envelope["msg"]


# gpugeek-api.txt, "python代码样例", as the doc prints it; only its lost indentation is restored. The test changes
# the host and the key (with str.replace, below), nothing else.
GPUGEEK_UPLOAD_SAMPLE = """
import requests
# 设置API KEY
API_KEY = "your_api_key"
# 源文件路径
src_name = "./ebAEgmhJGHN1Un7H.png"
# 目标文件名称
dest_name = "test_upload.png"
url = f'https://comfyapi.gpugeek.com/api/v1/file/upload/pre-signed-url?fileName={dest_name}'
headers = {
    "Authorization": f"Bearer {API_KEY}",
    "Content-Type": "application/json",
}
response = requests.post(url, headers=headers)
if response.status_code == 200:
    res = response.json()
    if res.get("code") == 0:
        pre_signed_url = res.get("data").get("signedUrl")
        with open(src_name, 'rb') as file:
            response = requests.put(
                pre_signed_url,
                data=file,
                headers={'Content-Type': 'application/octet-stream'}
            )
            response.raise_for_status()
            print("上传成功")
    else:
        print(res.get("message"))
"""

# The doc's "请求示例" of /api/v1/prompt, as printed.
GPUGEEK_PROMPT_BODY = """{
"workflow_id": 763311996779461,
"task_type": 1,
"prompt": {
"1": {
"inputs": {
"image": "https://xxxxxxxxx/comfy/input/xxx.png"
},
"class_type": "LoadImage",
"_meta": {
"title": "加载图像"
}
},
"2": {
"inputs": {
"images": [
"1",
0
]
},
"class_type": "PreviewImage",
"_meta": {
"title": "预览图像"
}
}
}
}"""

# The fields of the doc's "获取任务详情" answer.
GPUGEEK_TASK_FIELDS = {
    "prompt_id", "workflow_id", "env_id", "status", "queue_duration", "run_duration", "result_url", "error_msg",
    "queue_size", "current_position", "origin_price", "created_at",
}


async def test_gpugeeks_upload_sample_then_its_prompt_and_task_flow(tmp_path: Path) -> None:
    if importlib.util.find_spec("requests") is None:  # pragma: no cover - a dev install has it (via twine)
        pytest.skip("the doc's sample needs requests")
    (tmp_path / "ebAEgmhJGHN1Un7H.png").write_bytes(render_image(72, 40, 9, "the doc's image"))
    async with Emulator(service="gpugeek", api_key="gk-doc-sample-key", steps=3, step_seconds=0.01) as gpu:
        sample = GPUGEEK_UPLOAD_SAMPLE.replace("https://comfyapi.gpugeek.com", gpu.base_url).replace(
            '"your_api_key"', f'"{gpu.api_key}"'
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", sample, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**os.environ, "NO_PROXY": "*"},
        )
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, stderr.decode()
        assert stdout.decode().strip() == "上传成功"
        assert gpu.stats.requests["presign"] == 1 and gpu.stats.uploads == 1

        oss_url = f"{gpu.storage_url}/comfy/input/test_upload.png"
        headers = {"Authorization": f"Bearer {gpu.api_key}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=gpu.base_url, headers=headers, trust_env=False) as api:
            committed = (await api.post(G.COMMIT_PATH, json={"oss_url": oss_url})).json()
            assert (committed["code"], committed["message"], committed["data"]) == (0, "success", {"oss_url": oss_url})
            body = GPUGEEK_PROMPT_BODY.replace("https://xxxxxxxxx/comfy/input/xxx.png", oss_url)
            submitted = (await api.post(G.SUBMIT_PATH, content=body.encode())).json()
            assert submitted["code"] == 0, submitted
            prompt_id = submitted["data"]["prompt_id"]
            async with asyncio.timeout(10):  # a failure bound only
                while True:
                    info = (await api.get(f"/api/v1/task/{prompt_id}")).json()["data"]
                    if info["status"] in (3, 4, 5):
                        break
                    await asyncio.sleep(0.01)
        assert set(info) == GPUGEEK_TASK_FIELDS
        assert (info["status"], info["prompt_id"], info["workflow_id"]) == (3, int(prompt_id), 763311996779461)
        [result] = info["result_url"]["2"]  # the PreviewImage node
        async with httpx.AsyncClient(trust_env=False) as storage:
            image = await storage.get(result)
        assert decode_png(image.content)[:2] == (72, 40)
        assert gpu.stats.storage_requests_with_authorization == 0
