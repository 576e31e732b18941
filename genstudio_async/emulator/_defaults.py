"""The emulator's own defaults (the SDK's are in ``genstudio_async._constants``). Importing this module needs
none of the emulator's server dependencies: the ``genstudio`` command reads its flags' defaults here.

Grouped like ``_constants``: one section per concern, each value with a comment saying why it is what it is.
"""

from __future__ import annotations

from typing import Final

# --- which service an emulator plays ---------------------------------------------------------------------------
# ``Emulator(service=...)`` and ``genstudio emulator --service ...``: GenStudio unless told otherwise.
SERVICE_GENSTUDIO: Final = "genstudio"
SERVICE_GPUGEEK: Final = "gpugeek"
DEFAULT_SERVICE: Final = SERVICE_GENSTUDIO

# --- messages ------------------------------------------------------------------------------------------------------
# How many characters of a client's id or name a refusal quotes (a hostile one may be kilobytes long).
QUOTED_CHARS: Final = 80

# --- GPUGeek: tasks -----------------------------------------------------------------------------------------------
# (The built-in workflows, the docs' exports under the ids they run as, ship with the SDK: genstudio_async.workflows.)
# Every task reports this ``env_id`` (the doc's sample shows a 15-digit id like the workflow's).
GPUGEEK_ENV_ID: Final = 763311996770001
# prompt_ids are 15-digit integers in the doc ("763289064770885"); the emulator draws random ones of that length.
GPUGEEK_PROMPT_ID_DIGITS: Final = 15
# ``origin_price`` of every task, in yuan: the doc's sample value.
GPUGEEK_PRICE_PER_RUN: Final = 0.11
# class_types whose nodes are a workflow's outputs: ``result_url`` is keyed by their node ids.
GPUGEEK_OUTPUT_CLASS_TYPES: Final = frozenset({"SaveImage", "PreviewImage"})
# class_types whose ``image`` input names an image to load: a committed upload or an http(s) URL.
GPUGEEK_IMAGE_CLASS_TYPES: Final = frozenset({"LoadImage", "LoadImageMask"})

# --- GPUGeek: uploads ---------------------------------------------------------------------------------------------
# Where a pre-signed upload lands on the object-store origin, as in the doc's sample ("/comfy/input/xxx.png").
GPUGEEK_UPLOAD_PREFIX: Final = "comfy/input/"
# How long a pre-signed upload URL may be used (the doc does not say; an hour is what OSS consoles default to).
GPUGEEK_PRESIGN_TTL_SECONDS: Final = 3600
# The longest ``file_name`` a presign accepts, in UTF-8 bytes (an object-store key segment; file systems allow 255).
GPUGEEK_MAX_FILE_NAME_BYTES: Final = 255

# --- the GenStudio emulator, and what both share ----------------------------------------------------------
# Where it listens and who it lets in. Port 0 asks the OS for a free port; the emulator tells the real one.
EMULATOR_DEFAULT_HOST: Final = "127.0.0.1"
EMULATOR_DEFAULT_PORT: Final = 8188
EMULATOR_DEFAULT_API_KEY: Final = "sk-emulator"
# Admin routes (faults, stats, pause/resume, workflows, clock) live under this prefix on the API port.
EMULATOR_ADMIN_PATH_PREFIX: Final = "/_emulator"

# The simulated queue: how many workers run tasks at once, and how a task advances (progress_num goes up in
# ``steps`` equal steps of ``step_seconds`` each). The defaults finish a task in about 0.3 s, fast enough for
# tests; ``--step-seconds 0.5`` makes it slow enough to watch in a demo.
EMULATOR_DEFAULT_WORKERS: Final = 2
EMULATOR_DEFAULT_STEPS: Final = 10
EMULATOR_DEFAULT_STEP_SECONDS: Final = 0.03
# Queue-position changes of many queued tasks are pushed to their sockets at most this often.
EMULATOR_QUEUE_NOTIFY_INTERVAL: Final = 0.05

# prompt_token: a JWT HS256 with these claims, valid this long.
EMULATOR_TOKEN_TTL_SECONDS: Final = 24 * 3600
EMULATOR_TOKEN_ISSUER: Final = "infini"
EMULATOR_TENANT_ID: Final = "te-emulator"
EMULATOR_ACCOUNT_ID: Final = "ac-emulator"

# Result storage: an OSS-like second origin serving signed URLs (HMAC-SHA1, OSS signature V1).
EMULATOR_OSS_BUCKET: Final = "genstudio-emulator"
EMULATOR_OSS_ACCESS_KEY_ID: Final = "LTAI5tEmulatorAccessKey"
# Each URL's Expires is moved forward by at most this many seconds so that its signature holds a "+"
# (percent-encoded "%2B"): a client that percent-decodes signed URLs then fails on every URL, not on a third.
EMULATOR_SIGNATURE_PLUS_SEARCH: Final = 64

# Generated images: size when the workflow does not say, and the clamps that keep an absurd request cheap.
EMULATOR_DEFAULT_IMAGE_SIZE: Final = 512
EMULATOR_MAX_IMAGE_SIDE: Final = 2048
EMULATOR_MAX_BATCH_SIZE: Final = 16
# The output node id used when a workflow has no SaveImage node.
EMULATOR_DEFAULT_OUTPUT_NODE: Final = "9"
# How many rendered PNGs are kept in memory for repeated downloads.
EMULATOR_RENDER_CACHE_SIZE: Final = 32

EMULATOR_MAX_UPLOAD_BYTES: Final = 20 * 1024 * 1024
# JSON bodies (submit, get_task_info, cancel) larger than this get 413. The service's limit is undocumented;
# this only keeps one request from holding hundreds of megabytes for the emulator's lifetime.
EMULATOR_MAX_JSON_BODY_BYTES: Final = 4 * 1024 * 1024
# ``python -m genstudio_async.emulator`` runs on uvloop when it is installed; this variable set to "asyncio" keeps
# asyncio's own loop (to compare the two, or to rule uvloop out).
EMULATOR_LOOP_ENV: Final = "GENSTUDIO_EMULATOR_LOOP"
# How long a stopping emulator waits for open connections before cutting them.
EMULATOR_SHUTDOWN_TIMEOUT: Final = 3.0
# ``Emulator.wait_status`` gives up after this many seconds unless told otherwise.
EMULATOR_WAIT_STATUS_TIMEOUT: Final = 10.0

# How long a GenStudio result file lives (the docs: deleted 3 days after generation), and how long its signed
# URL stays valid when the request names no url_expire_period (the docs' default).
RESULT_RETENTION_SECONDS: Final = 3 * 24 * 3600
DEFAULT_URL_EXPIRE_PERIOD: Final = 600
