"""Building prompts: the builder, the exported-workflow reader, seeds, spec validation at submit, local images."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest

from genstudio_async import (
    ApiWorkflow,
    InvalidInputError,
    LocalImage,
    PromptBuilder,
    PromptValidationError,
    TaskStatus,
    WorkflowSpec,
)
from genstudio_async.emulator import Emulator, builtin_workflows

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
T2I, I2I, TUTORIAL = "wf-c73diz7kadp6ffgn", "wf-c73epllu4i3bxvzr", "wf-c72qozydy6suxesa"


@pytest.fixture
def spec() -> WorkflowSpec:
    """The tutorial's text-to-image parameter spec (shipped with the emulator)."""
    return builtin_workflows()[TUTORIAL]


@pytest.fixture
def exported() -> ApiWorkflow:
    """A real ComfyUI API-format export: the KSampler (3) links positive to node 6 and negative to node 7."""
    return ApiWorkflow.load(EXAMPLES / "workflows" / "t2i_workflow_api.json")


def test_both_tutorial_specs_parse_with_their_types_and_ranges() -> None:
    t2i, i2i = builtin_workflows()[TUTORIAL], builtin_workflows()[I2I]
    assert t2i.nodes["3"].class_type == "KSampler"
    assert t2i.nodes["3"].inputs["seed"].spec.max == 18446744073709552000
    assert t2i.nodes["3"].inputs["cfg"].type == "FLOAT" and t2i.nodes["3"].inputs["cfg"].spec.step == 0.1
    assert "ddim" in t2i.nodes["3"].inputs["sampler_name"].spec.choices
    assert t2i.nodes["4"].inputs["ckpt_name"].type == "MODEL"
    assert i2i.nodes["10"].class_type == "LoadImage" and i2i.nodes["10"].inputs["image"].type == "IMAGE"
    assert t2i.base_prompt()["3"]["inputs"]["sampler_name"] == "ddim"


def test_validation_reports_every_problem_in_one_error(spec: WorkflowSpec) -> None:
    prompt = {
        "3": {"inputs": {"steps": 0, "cfg": "high", "sampler_name": "warp-drive"}},
        "42": {"inputs": {"text": "x"}},
        "6": {"inputs": {"colour": "red"}},
    }
    with pytest.raises(PromptValidationError) as caught:
        spec.validate(prompt)
    problems = {(p.node_id, p.input): p.problem for p in caught.value.problems}
    assert set(problems) == {("3", "steps"), ("3", "cfg"), ("3", "sampler_name"), ("42", None), ("6", "colour")}
    message = str(caught.value)
    assert "5 problems" in message and "KSampler" in message and "below the minimum 1" in message


def test_the_exported_workflow_finds_positive_and_negative_through_the_sampler(exported: ApiWorkflow) -> None:
    assert exported.linked_node("positive") == "6"
    assert exported.linked_node("negative") == "7"
    prompt = PromptBuilder(workflow=exported).positive("a red fox").negative("blurry").build()
    assert prompt == {"6": {"inputs": {"text": "a red fox"}}, "7": {"inputs": {"text": "blurry"}}}


def test_without_the_export_identical_titles_are_refused_with_a_way_out(spec: WorkflowSpec) -> None:
    # Both text nodes of the tutorial's spec are titled "CLIP Text Encode (Prompt)": no way to guess.
    with pytest.raises(InvalidInputError, match=r"ApiWorkflow\.load"):
        spec.builder().positive("a red fox")


def test_positive_and_negative_by_title_when_titles_say_so() -> None:
    titled = WorkflowSpec.from_dict(
        {
            "11": {"inputs": {"text": {"type": "STRING", "current": ""}}, "_meta": {"title": "Positive Prompt"}},
            "12": {"inputs": {"text": {"type": "STRING", "current": ""}}, "_meta": {"title": "负面提示词"}},
        }
    )
    prompt = titled.builder().positive("sunset").negative("rain").build()
    assert prompt["11"]["inputs"]["text"] == "sunset" and prompt["12"]["inputs"]["text"] == "rain"


def test_builder_sets_inputs_by_id_class_type_or_title_and_never_mutates_the_base(
    spec: WorkflowSpec, exported: ApiWorkflow
) -> None:
    base = spec.base_prompt()
    frozen = copy.deepcopy(base)
    start = PromptBuilder(base, spec=spec, workflow=exported)
    built = start.set("KSampler", steps=30).set("Load Checkpoint", ckpt_name="x.safetensors").set("5", width=768)
    prompt = built.build()
    assert prompt["3"]["inputs"]["steps"] == 30 and prompt["3"]["inputs"]["cfg"] == 7  # the rest kept
    assert prompt["4"]["inputs"]["ckpt_name"] == "x.safetensors"
    assert prompt["5"]["inputs"]["width"] == 768
    assert base == frozen  # the caller's base prompt is untouched
    assert start.build() == frozen  # and so is the builder it started from
    prompt["3"]["inputs"]["steps"] = 99
    assert built.build()["3"]["inputs"]["steps"] == 30  # build() hands out a copy


def test_a_name_that_matches_several_nodes_must_be_an_id(spec: WorkflowSpec) -> None:
    with pytest.raises(InvalidInputError, match=r"several nodes \(6, 7\)"):
        spec.builder().set("CLIPTextEncode", text="x")
    with pytest.raises(InvalidInputError, match="no node is called 'Upscaler'"):
        spec.builder().set("Upscaler", scale=2)


def test_randomised_seeds_stay_within_the_spec_range(spec: WorkflowSpec) -> None:
    narrow = WorkflowSpec.from_dict(
        {"3": {"inputs": {"seed": {"type": "INT", "current": 1, "spec": {"min": 10, "max": 20}}}}}
    )
    seeds = {narrow.builder().randomize_seeds(random.Random(n)).build()["3"]["inputs"]["seed"] for n in range(50)}
    assert seeds <= set(range(10, 21)) and len(seeds) > 3
    wide = spec.builder().randomize_seeds(random.Random(7)).build()["3"]["inputs"]["seed"]
    assert 0 <= wide <= 0xFFFF_FFFF_FFFF_FFFF  # the spec's max (2**64 rounded by JSON) is capped
    assert spec.builder().randomize_seeds().build() != spec.builder().randomize_seeds().build()


# --- at submit time, against the emulator ----------------------------------------------------------------------


async def test_submit_with_a_spec_validates_before_any_request(
    genstudio_emulator: Emulator, spec: WorkflowSpec
) -> None:
    async with genstudio_emulator.client() as client:
        with pytest.raises(PromptValidationError) as caught:
            await client.submit(TUTORIAL, {"3": {"inputs": {"steps": -1, "sampler_name": "nope"}}}, spec=spec)
    assert len(caught.value.problems) == 2
    assert genstudio_emulator.stats.submits == 0


async def test_local_images_are_uploaded_once_and_substituted(
    genstudio_emulator: Emulator, tmp_path: Path
) -> None:
    picture = tmp_path / "fox.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"fox" * 100)
    spec = genstudio_emulator.workflow(I2I)
    async with genstudio_emulator.client() as client:
        # The tutorial's i2i spec has a current checkpoint missing from its own choices: pick a listed one.
        prompt = spec.builder().set("LoadImage", image=picture).set("4", ckpt_name="sd_xl_base_1.0.safetensors")
        first = await client.run(I2I, prompt.build(), spec=spec)
        second = await client.run(I2I, {"10": {"inputs": {"image": LocalImage(picture.read_bytes())}}})
    assert first.status is second.status is TaskStatus.SUCCEEDED
    # Both ran: the emulator refuses an image id it never received, so each local image became a real image_id,
    assert genstudio_emulator.stats.uploads == 1  # and the same bytes, by path or in memory, were uploaded once.


async def test_a_missing_local_image_fails_before_submitting(genstudio_emulator: Emulator, tmp_path: Path) -> None:
    async with genstudio_emulator.client() as client:
        with pytest.raises(InvalidInputError, match="no such file"):
            await client.submit(I2I, {"10": {"inputs": {"image": tmp_path / "missing.png"}}})
    assert genstudio_emulator.stats.submits == 0 and genstudio_emulator.stats.uploads == 0


# --- whole workflows (GPUGeek runs the workflow it is sent) -----------------------------------------------------

_EXPORT = Path(__file__).resolve().parent.parent / "examples" / "workflows" / "t2i_workflow_api.json"


def test_a_whole_workflow_builder_keeps_every_node_and_leaves_the_original_alone() -> None:
    import copy
    import json
    import random

    exported = json.loads(_EXPORT.read_text(encoding="utf-8"))
    original = copy.deepcopy(exported)
    workflow = ApiWorkflow.load(exported)
    built = (
        workflow.builder()
        .positive("a red fox")
        .negative("blurry")
        .set("KSampler", steps=30)
        .set("Empty Latent Image", width=768)
        .randomize_seeds(random.Random(7))
        .build()
    )
    assert set(built) == set(exported)
    for node_id, node in exported.items():  # class_type, _meta and the links kept, only the set inputs changed
        assert built[node_id]["class_type"] == node["class_type"] and built[node_id].get("_meta") == node.get("_meta")
    assert built["6"]["inputs"]["text"] == "a red fox" and built["7"]["inputs"]["text"] == "blurry"
    assert built["3"]["inputs"]["steps"] == 30 and built["5"]["inputs"]["width"] == 768
    assert built["3"]["inputs"]["positive"] == exported["3"]["inputs"]["positive"]  # a link stays a link
    assert built["3"]["inputs"]["seed"] != exported["3"]["inputs"]["seed"]
    assert exported == original and workflow.to_dict() == original  # nothing it started from changed
    built["6"]["inputs"]["text"] = "changed afterwards"
    assert workflow.builder().build()["6"]["inputs"]["text"] == original["6"]["inputs"]["text"]


def test_a_whole_workflow_builder_refuses_a_node_the_workflow_does_not_have() -> None:
    workflow = ApiWorkflow.load(_EXPORT)
    with pytest.raises(InvalidInputError, match="no node"):
        workflow.builder().set("NoSuchNode", value=1)
    with pytest.raises(InvalidInputError, match="no node"):
        workflow.builder().set("42", value=1)
