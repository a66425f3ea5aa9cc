"""Every captured error body of POST /prompt maps to its own readable, typed error."""

from __future__ import annotations

import json

import pytest

from comfy.errors import (
    ComfyInvalidPrompt,
    ComfyServerError,
    ComfyValidationError,
    error_from_response,
)

from .conftest import fixture

ERRORS = fixture("prompt_errors.json")


def _error(case: str):
    capture = ERRORS[case]
    body = json.dumps(capture["json"]) if "json" in capture else capture["text"]
    return error_from_response(capture["status"], body)


def test_every_captured_body_maps_to_a_specific_class() -> None:
    expected = {
        "unknown_node_class": ComfyInvalidPrompt,
        "missing_required_input": ComfyValidationError,
        "ckpt_name_not_in_list": ComfyValidationError,
        "lora_name_not_in_list": ComfyValidationError,
        "multiple_errors_in_multiple_nodes": ComfyValidationError,
        "value_below_min": ComfyValidationError,
        "value_wrong_type": ComfyValidationError,
        "link_to_missing_node": ComfyValidationError,
        "link_type_mismatch": ComfyValidationError,
        "no_output_node": ComfyInvalidPrompt,
        "empty_prompt_object": ComfyInvalidPrompt,
        "missing_class_type": ComfyInvalidPrompt,
        "body_without_prompt_key": ComfyInvalidPrompt,
        "malformed_json_body": ComfyServerError,
        "empty_body": ComfyServerError,
    }
    assert set(expected) == set(ERRORS)
    for case, cls in expected.items():
        assert type(_error(case)) is cls, case


def test_checkpoint_not_in_list_names_node_input_and_value() -> None:
    error = _error("ckpt_name_not_in_list")
    assert str(error) == "CheckpointLoaderSimple #4: ckpt_name 'not_installed_model.safetensors' not in list"
    [node_error] = error.node_errors
    assert (node_error.node_id, node_error.class_type, node_error.input_name) == ("4", "CheckpointLoaderSimple", "ckpt_name")
    assert error.missing_models() == {"not_installed_model.safetensors"}
    assert error.only_missing_models()


def test_several_errors_are_all_listed() -> None:
    error = _error("multiple_errors_in_multiple_nodes")
    text = str(error)
    assert "CheckpointLoaderSimple #4: ckpt_name 'nope.safetensors' not in list" in text
    assert "LoraLoader #10: lora_name 'nope_lora.safetensors' not in list" in text
    assert "KSampler #3" in text  # steps 0 and the fake sampler are reported too
    assert len(error.node_errors) >= 4
    assert not error.only_missing_models()  # a bad sampler is the job's fault, not the server's


def test_other_validation_kinds_read_well() -> None:
    assert str(_error("missing_required_input")) == "EmptyImage #1: width: Required input is missing"
    assert str(_error("value_below_min")) == "EmptyImage #1: width: Value 0 smaller than min of 1"
    wrong_type = str(_error("value_wrong_type"))
    assert wrong_type.startswith("EmptyImage #1: width: Failed to convert an input value to a INT value")
    assert "abc" in wrong_type
    assert str(_error("link_to_missing_node")).startswith("SaveImage #2: Exception when validating node")
    assert "received_type(MODEL) mismatch" in str(_error("link_type_mismatch"))
    assert not _error("missing_required_input").only_missing_models()


def test_whole_prompt_errors_keep_their_type() -> None:
    unknown = _error("unknown_node_class")
    assert unknown.error_type == "invalid_prompt"
    assert str(unknown) == "Cannot execute because node NoSuchNode does not exist. (Node ID '#1')"
    assert _error("no_output_node").error_type == "prompt_no_outputs"
    assert _error("body_without_prompt_key").error_type == "no_prompt"
    assert str(_error("body_without_prompt_key")) == "No prompt provided"


def test_plain_text_500_is_a_server_error() -> None:
    error = _error("malformed_json_body")
    assert error.status == 500
    assert str(error) == "HTTP 500: 500 Internal Server Error: Server got itself in trouble"


@pytest.mark.parametrize("body", ["", "not json", "[1, 2]", '{"error": "flat string"}'])
def test_unstructured_bodies_become_server_errors(body: str) -> None:
    error = error_from_response(502, body)
    assert isinstance(error, ComfyServerError) and error.status == 502
