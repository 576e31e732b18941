"""WorkflowSpec: loading the "入参范围" format, the base prompt, and prompt checks that list every problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from genstudio_async import InvalidInputError, PromptProblem, PromptValidationError
from genstudio_async.workflow import WorkflowSpec

SPECS = Path(__file__).resolve().parents[2] / "genstudio_async" / "workflows"
TUTORIAL_SPEC = SPECS / "wf-c72qozydy6suxesa.json"
I2I_SPEC = SPECS / "wf-c73epllu4i3bxvzr.json"


@pytest.fixture
def spec() -> WorkflowSpec:
    return WorkflowSpec.from_file(TUTORIAL_SPEC)


def by_input(problems: list[PromptProblem]) -> dict[tuple[str, str | None], PromptProblem]:
    return {(problem.node_id, problem.input): problem for problem in problems}


def test_loads_from_a_dict_a_json_text_bytes_and_a_path() -> None:
    text = TUTORIAL_SPEC.read_text(encoding="utf-8")
    loaded = [
        WorkflowSpec.load(json.loads(text)),
        WorkflowSpec.load(text),
        WorkflowSpec.load(text.encode()),
        WorkflowSpec.load(TUTORIAL_SPEC),
        WorkflowSpec.load(str(TUTORIAL_SPEC)),
        WorkflowSpec.from_json(text),
        WorkflowSpec.from_dict(json.loads(text)),
    ]
    assert all(spec.to_dict() == json.loads(text) for spec in loaded)


def test_nodes_carry_class_type_title_and_typed_inputs(spec: WorkflowSpec) -> None:
    assert list(spec.nodes) == ["3", "4", "5", "6", "7", "9"]
    sampler = spec.nodes["3"]
    assert (sampler.class_type, sampler.title) == ("KSampler", "KSampler")
    cfg = sampler.inputs["cfg"]
    assert (cfg.type, cfg.current) == ("FLOAT", 7)
    assert (cfg.spec.default, cfg.spec.min, cfg.spec.max, cfg.spec.step, cfg.spec.round) == (8, 0, 100, 0.1, 0.01)
    assert "ddim" in sampler.inputs["sampler_name"].spec.choices
    seed_max = sampler.inputs["seed"].spec.max
    assert seed_max == 18446744073709552000 and isinstance(seed_max, int)  # a JSON number without a point
    assert spec.nodes["6"].inputs["text"].type == "STRING"


def test_unknown_keys_and_unknown_types_are_kept() -> None:
    raw: dict[str, Any] = {
        "1": {
            "inputs": {"mask": {"type": "MASK_THING", "current": [1, 2], "spec": {"weird": True}, "note": "x"}},
            "class_type": "Custom",
            "_meta": {"title": "Custom node"},
            "extra_node_key": 1,
        }
    }
    spec = WorkflowSpec.from_dict(raw)
    mask = spec.nodes["1"].inputs["mask"]
    assert mask.type == "MASK_THING" and mask.spec.extra == {"weird": True} and mask.extra == {"note": "x"}
    assert spec.nodes["1"].extra["extra_node_key"] == 1
    assert spec.to_dict() == raw
    assert spec.problems({"1": {"inputs": {"mask": {"anything": ["goes"]}}}}) == []


def test_base_prompt_holds_every_current_value_and_is_a_fresh_copy(spec: WorkflowSpec) -> None:
    base = spec.base_prompt()
    assert base["3"]["inputs"] == {
        "seed": 1, "steps": 20, "cfg": 7, "sampler_name": "ddim", "scheduler": "karras", "denoise": 1,
    }
    assert base["5"] == {"inputs": {"width": 512, "height": 512, "batch_size": 1}}
    base["3"]["inputs"]["steps"] = 99
    assert spec.base_prompt()["3"]["inputs"]["steps"] == 20
    # the tutorial's spec is copied verbatim, quirk included: its current checkpoint is not among its choices
    assert [(p.node_id, p.input) for p in spec.problems(spec.base_prompt())] == [("4", "ckpt_name")]


def test_the_tutorials_request_body_fits_the_tutorials_workflow(spec: WorkflowSpec) -> None:
    prompt = {
        "3": {"inputs": {"seed": 423710630168223, "steps": 20, "cfg": 7, "sampler_name": "ddim",
                         "scheduler": "karras", "denoise": 1}},
        "4": {"inputs": {"ckpt_name": "common/sd1.5/majicMIX realistic 麦橘写实_v7.safetensors"}},
        "5": {"inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"inputs": {"text": "Spiderman in a red suit"}},
        "7": {"inputs": {"text": "ugly, deformed"}},
    }
    assert spec.problems(prompt) == []
    spec.validate(prompt)
    assert spec.problems(None) == [] and spec.problems({}) == []


def test_every_problem_is_listed_at_once_with_where_what_and_what_is_allowed(spec: WorkflowSpec) -> None:
    prompt = {
        "3": {"inputs": {"steps": 0, "cfg": 101.5, "sampler_name": "nope", "seed": True, "color": 1}},
        "5": {"inputs": {"width": 512.0, "batch_size": "1"}},
        "6": {"inputs": {"text": 42}},
        "42": {"inputs": {"x": 1}},
    }
    problems = spec.problems(prompt)
    found = by_input(problems)
    assert set(found) == {
        ("3", "steps"), ("3", "cfg"), ("3", "sampler_name"), ("3", "seed"), ("3", "color"),
        ("5", "width"), ("5", "batch_size"), ("6", "text"), ("42", None),
    }
    assert "below the minimum 1" in found["3", "steps"].problem
    assert found["3", "steps"].allowed == "an integer from 1 to 10000"
    assert found["3", "steps"].title == "KSampler"
    assert "above the maximum 100" in found["3", "cfg"].problem
    assert "not one of the allowed choices" in found["3", "sampler_name"].problem
    assert (found["3", "sampler_name"].allowed or "").startswith("one of 'euler', 'euler_cfg_pp'")
    assert "(28 choices)" in (found["3", "sampler_name"].allowed or "")
    assert "expected an integer, got bool" in found["3", "seed"].problem  # a bool is not an INT
    assert found["3", "color"].problem == "unknown input" and "sampler_name" in (found["3", "color"].allowed or "")
    assert "expected an integer, got float" in found["5", "width"].problem
    assert "expected a string" in found["6", "text"].problem
    assert found["42", None].problem == "unknown node" and "3 (KSampler)" in (found["42", None].allowed or "")

    with pytest.raises(PromptValidationError) as caught:
        spec.validate(prompt)
    assert caught.value.problems == problems
    message = str(caught.value)
    assert message.startswith("the prompt has 9 problems")
    expected = "node '3' (KSampler) input 'steps': 0 is below the minimum 1 (allowed: an integer from 1 to 10000)"
    assert expected in message


def test_numbers_int_for_float_the_huge_seed_and_non_finite(spec: WorkflowSpec) -> None:
    assert spec.problems({"3": {"inputs": {"cfg": 7, "denoise": 0.5}}}) == []  # an int is fine for FLOAT
    assert spec.problems({"3": {"inputs": {"seed": 0xFFFF_FFFF_FFFF_FFFF}}}) == []  # ComfyUI's largest seed
    too_big = by_input(spec.problems({"3": {"inputs": {"seed": 18446744073709552000}}}))  # the spec's "max"
    assert "above the maximum" in too_big["3", "seed"].problem
    not_finite = spec.problems({"3": {"inputs": {"cfg": float("nan")}}})
    assert [(p.node_id, p.input) for p in not_finite] == [("3", "cfg")]  # reported once, by the shape check
    assert "JSON" in not_finite[0].problem


def test_a_prompt_of_the_wrong_shape_is_refused_with_a_reason(spec: WorkflowSpec) -> None:
    whole = spec.problems(["not", "a", "mapping"])
    assert len(whole) == 1 and whole[0].node_id == "*" and "mapping of node ids" in whole[0].problem
    shaped = by_input(spec.problems({"3": {"steps": 20}, "6": "text"}))
    assert set(shaped) == {("3", None), ("6", None)}
    assert shaped["3", None].title == "KSampler"
    # the parameter spec itself, pasted as a prompt (the docs warn against it)
    pasted = spec.problems({"3": {"inputs": {"steps": {"type": "INT", "current": 20, "spec": {}}}}})
    assert len(pasted) == 1 and "parameter-spec" in pasted[0].problem


def test_list_model_and_image_inputs() -> None:
    i2i = WorkflowSpec.from_file(I2I_SPEC)
    assert i2i.nodes["10"].inputs["image"].type == "IMAGE"
    assert i2i.problems({"10": {"inputs": {"image": "te-x/ac-y/sui-z.png"}}}) == []  # empty choices: any id
    not_a_string = by_input(i2i.problems({"10": {"inputs": {"image": 7}}}))
    assert not_a_string["10", "image"].problem.startswith("expected an image")
    wrong_model = by_input(i2i.problems({"4": {"inputs": {"ckpt_name": "not-a-model.safetensors"}}}))
    assert "not one of the allowed choices" in wrong_model["4", "ckpt_name"].problem


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{not json", "not valid JSON"),
        ([1, 2], "must be a dict, a JSON text or a file path, got list"),
        ("[1, 2]", "not valid JSON|cannot read"),
        ({"3": "KSampler"}, "node '3' must be an object"),
        ({"3": {"inputs": {"seed": 5}}}, "ComfyUI API export"),
        ({"3": {"inputs": {"seed": {"type": "INT", "spec": {"min": "zero"}}}}}, "spec 'min' must be a number"),
        ({"3": {"inputs": {"seed": {"type": "INT", "spec": {"choices": "a"}}}}}, "'choices' must be a list"),
    ],
)
def test_a_malformed_spec_is_refused_with_where(source: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        WorkflowSpec.load(source)


def test_a_json_text_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="JSON object of nodes, got list"):
        WorkflowSpec.from_json("[1, 2]")


def test_a_missing_file_is_an_invalid_input(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read the workflow spec"):
        WorkflowSpec.load(tmp_path / "missing.json")
