"""The emulator's own defaults (the SDK's are in ``genstudio_async._constants``; the ``EMULATOR_*`` ones there,
older than this module, are the emulator's too and stay where code outside the emulator reads them).

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

# --- GPUGeek: the built-in workflows ------------------------------------------------------------------------------
# The API doc's request sample submits to workflow 763311996779461: the emulator runs the docs' text-to-image
# export under that id. The doc names no second id; the image-to-image export gets one of the same shape.
GPUGEEK_T2I_WORKFLOW_ID: Final = 763311996779461
GPUGEEK_I2I_WORKFLOW_ID: Final = 763311996779525
# The exports themselves (ComfyUI "Save (API Format)"), package data in genstudio_async/emulator/gpugeek_workflows/.
GPUGEEK_BUILTIN_WORKFLOW_FILES: Final = {
    GPUGEEK_T2I_WORKFLOW_ID: "t2i_workflow_api.json",
    GPUGEEK_I2I_WORKFLOW_ID: "i2i_workflow_api.json",
}
# Every task reports this ``env_id`` (the doc's sample shows a 15-digit id like the workflow's).
GPUGEEK_ENV_ID: Final = 763311996770001

# --- GPUGeek: tasks -----------------------------------------------------------------------------------------------
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
