"""What a task's results look like, read from the input values of its run, the same way for every service.

A service layer turns its prompt into ``RunNode``s (GenStudio: the spec's nodes with the overrides applied;
GPUGeek: the nodes of the whole workflow it was sent) and names the output nodes; ``plan_run`` reads the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._defaults import EMULATOR_DEFAULT_IMAGE_SIZE, EMULATOR_MAX_BATCH_SIZE
from ._png import clamp_side

SEED_INPUTS = ("seed", "noise_seed")


@dataclass(frozen=True)
class RunNode:
    """One node of a run: its id, its input values, and which of its inputs name an image to load."""

    node_id: str
    values: Mapping[str, Any]
    image_inputs: Container[str]


@dataclass(frozen=True)
class RenderPlan:
    """What the results of one task look like: size, how many per output node, and what seeds the drawing."""

    width: int
    height: int
    batch_size: int
    seed: int
    text: str
    output_nodes: tuple[str, ...]


def plan_run(
    nodes: Iterable[RunNode],
    output_nodes: tuple[str, ...],
    uploaded_size: Callable[[str], tuple[int, int] | None],
) -> RenderPlan:
    """Read size, batch, seed and text from a run's input values.

    Size: an uploaded PNG given to an image input (image-to-image), else the first node with ``width`` and
    ``height`` inputs (EmptyLatentImage-like), else 512×512; each side clamped (see ``_png``). Batch: that
    node's ``batch_size``, clamped to 1..``EMULATOR_MAX_BATCH_SIZE``. Seed: the first ``seed``/``noise_seed``.
    Text: every string ``text`` input, joined.
    """
    width = height = EMULATOR_DEFAULT_IMAGE_SIZE
    batch_size = 1
    seed = 0
    texts: list[str] = []
    sized_by_image = sized_by_latent = seed_found = False
    for node in nodes:
        values = node.values
        for name, value in values.items():
            if name in node.image_inputs and isinstance(value, str) and not sized_by_image:
                size = uploaded_size(value)
                if size is not None:
                    width, height = size
                    sized_by_image = True
            elif name in SEED_INPUTS and _is_int(value) and not seed_found:
                seed, seed_found = value, True
            elif name == "text" and isinstance(value, str):
                texts.append(value)
        if not sized_by_latent and _is_int(values.get("width")) and _is_int(values.get("height")):
            sized_by_latent = True
            if not sized_by_image:
                width, height = int(values["width"]), int(values["height"])
            if _is_int(values.get("batch_size")):
                batch_size = int(values["batch_size"])
    return RenderPlan(
        width=clamp_side(width),
        height=clamp_side(height),
        batch_size=max(1, min(EMULATOR_MAX_BATCH_SIZE, batch_size)),
        seed=seed,
        text="\n".join(texts),
        output_nodes=output_nodes,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
