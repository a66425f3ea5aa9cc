"""Prompt validation with ComfyUI's error types, messages and `node_errors` layout.

Walks from each output node up its links, depth first in the node's declared input order, and
records each node's verdict when it is done, so `node_errors` comes out in the same order as
ComfyUI's (the upstream loader before the sampler that uses it). Converted values (e.g. "64" for
an INT) are written back into the prompt, as ComfyUI does, so history shows what really ran.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from comfy.simulator.nodedefs import InputSpec, NodeCatalog, known_node

log = logging.getLogger(__name__)

MAX_LISTED_OPTIONS = 20  # ComfyUI shortens longer combo lists to "(list of length N)"
_CONVERTERS: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


def error(type_: str, message: str, details: str = "", extra_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """One ComfyUI error object."""
    return {"type": type_, "message": message, "details": details, "extra_info": extra_info or {}}


@dataclass
class ValidationResult:
    """What `POST /prompt` answers: queued when `ok`, else a 400 with `error` and `node_errors`."""

    ok: bool
    error: dict[str, Any] | None = None
    outputs: list[str] = field(default_factory=list)
    node_errors: dict[str, Any] = field(default_factory=dict)


def _invalid(err: dict[str, Any]) -> ValidationResult:
    return ValidationResult(ok=False, error=err)


def _is_link(value: Any) -> bool:
    return isinstance(value, list)


class _Validator:
    """One validation run over one prompt; `validated` keeps ComfyUI's completion order."""

    def __init__(self, prompt: dict[str, Any], catalog: NodeCatalog, image_exists: Callable[[str], bool]) -> None:
        self.prompt = prompt
        self.catalog = catalog
        self.image_exists = image_exists
        self.validated: dict[str, tuple[bool, list[dict[str, Any]]]] = {}

    def node(self, node_id: str) -> tuple[bool, list[dict[str, Any]]]:
        """Validate one node and (first) everything it links to; raises on a dangling link."""
        if node_id in self.validated:
            return self.validated[node_id]
        inputs = self.prompt[node_id]["inputs"]
        class_type = self.prompt[node_id]["class_type"]
        errors: list[dict[str, Any]] = []
        upstream_ok = True
        for spec in self.catalog.inputs(class_type):
            if spec.name not in inputs:
                if spec.category == "required":
                    errors.append(error("required_input_missing", "Required input is missing", spec.name,
                                        {"input_name": spec.name}))
                continue
            value = inputs[spec.name]
            if _is_link(value):
                link_error, linked_ok = self.link(spec, value)
                errors += link_error
                upstream_ok = upstream_ok and linked_ok
            else:
                errors += self.value(inputs, spec, class_type)
        if class_type == "LoadImage" and "image" in inputs and not _is_link(inputs["image"]):
            if not self.image_exists(str(inputs["image"])):
                errors.append(error("custom_validation_failed", "Custom validation failed for node",
                                    f"image - Invalid image file: {inputs['image']}", {"input_name": "image"}))
        verdict = (not errors and upstream_ok, errors)
        self.validated[node_id] = verdict
        return verdict

    def link(self, spec: InputSpec, value: list[Any]) -> tuple[list[dict[str, Any]], bool]:
        """Check a `[node_id, slot]` link: shape, type match, then the linked node itself."""
        if len(value) != 2:
            return [error("bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                          spec.name, {"input_name": spec.name, "input_config": spec.config, "received_value": value})], True
        source_id, slot = value
        received_type = self.catalog.return_types(self.prompt[source_id]["class_type"])[slot]
        if not _types_match(received_type, spec.input_type):
            details = f"{spec.name}, received_type({received_type}) mismatch input_type({spec.input_type})"
            return [error("return_type_mismatch", "Return type mismatch between linked nodes", details,
                          {"input_name": spec.name, "input_config": spec.config, "received_type": received_type,
                           "linked_node": value})], True
        try:
            linked_ok, _ = self.node(source_id)
        except Exception as exc:  # a broken node further up: ComfyUI reports it on that node
            self.validated[source_id] = (False, [error(
                "exception_during_inner_validation", "Exception when validating inner node", str(exc),
                {"input_name": spec.name, "input_config": spec.config, "exception_message": str(exc),
                 "exception_type": type(exc).__name__, "traceback": traceback.format_tb(exc.__traceback__),
                 "linked_node": value})])
            return [], False
        return [], linked_ok

    def value(self, inputs: dict[str, Any], spec: InputSpec, class_type: str) -> list[dict[str, Any]]:
        """Convert and range/list-check a literal value, writing the converted value back."""
        value = inputs[spec.name]
        if isinstance(value, dict) and "__value__" in value:
            value = inputs[spec.name] = value["__value__"]
        converter = _CONVERTERS.get(spec.input_type) if isinstance(spec.input_type, str) else None
        if converter is not None:
            try:
                value = inputs[spec.name] = converter(value)
            except Exception as exc:
                return [error("invalid_input_type", f"Failed to convert an input value to a {spec.input_type} value",
                              f"{spec.name}, {value}, {exc}",
                              {"input_name": spec.name, "input_config": spec.config, "received_value": value,
                               "exception_message": str(exc)})]
        if class_type == "LoadImage" and spec.name == "image":
            return []  # LoadImage validates its file itself (custom validation), not against the list
        base = {"input_name": spec.name, "input_config": spec.config, "received_value": value}
        if "min" in spec.options and value < spec.options["min"]:
            return [error("value_smaller_than_min", f"Value {value} smaller than min of {spec.options['min']}",
                          spec.name, base)]
        if "max" in spec.options and value > spec.options["max"]:
            return [error("value_bigger_than_max", f"Value {value} bigger than max of {spec.options['max']}",
                          spec.name, base)]
        choices = _combo_choices(spec)
        if choices is not None and value not in choices:
            listed = str(choices) if len(choices) <= MAX_LISTED_OPTIONS else f"(list of length {len(choices)})"
            config = spec.config if len(choices) <= MAX_LISTED_OPTIONS else None
            return [error("value_not_in_list", "Value not in list", f"{spec.name}: '{value}' not in {listed}",
                          {**base, "input_config": config})]
        return []


def _combo_choices(spec: InputSpec) -> list[Any] | None:
    if isinstance(spec.input_type, list):
        return spec.input_type
    if spec.input_type == "COMBO":
        return spec.options.get("options", [])
    return None


def _types_match(received: str, expected: str | list[str]) -> bool:
    if isinstance(expected, list):
        return received in ("COMBO", "*")
    if "*" in (received, expected):
        return True
    return bool(set(received.split(",")) & set(expected.split(",")))


def _structural_error(prompt: dict[str, Any]) -> dict[str, Any] | None:
    for node_id, node in prompt.items():
        if "class_type" not in node:
            return error("invalid_prompt", "Cannot execute because a node is missing the class_type property.",
                         f"Node ID '#{node_id}'")
        if not known_node(node["class_type"]):
            return error("invalid_prompt", f"Cannot execute because node {node['class_type']} does not exist.",
                         f"Node ID '#{node_id}'")
    return None


def validate_prompt(prompt: dict[str, Any], catalog: NodeCatalog, image_exists: Callable[[str], bool]) -> ValidationResult:
    """Validate an API-format prompt the way ComfyUI 0.3.64 does (same errors, same order)."""
    structural = _structural_error(prompt)
    if structural is not None:
        return _invalid(structural)
    outputs = [node_id for node_id, node in prompt.items() if catalog.is_output(node["class_type"])]
    if not outputs:
        return _invalid(error("prompt_no_outputs", "Prompt has no outputs"))
    validator = _Validator(prompt, catalog, image_exists)
    good: list[str] = []
    failures: list[dict[str, Any]] = []
    node_errors: dict[str, Any] = {}
    for output_id in outputs:
        try:
            ok, reasons = validator.node(output_id)
        except Exception as exc:
            ok, reasons = False, [error("exception_during_validation", "Exception when validating node", str(exc),
                                        {"exception_type": type(exc).__name__,
                                         "traceback": traceback.format_tb(exc.__traceback__)})]
            validator.validated[output_id] = (False, reasons)
        if ok:
            good.append(output_id)
            continue
        failures += reasons
        for node_id, (_, node_reasons) in validator.validated.items():
            if node_reasons:
                entry = node_errors.setdefault(node_id, {"errors": node_reasons, "dependent_outputs": [],
                                                         "class_type": prompt[node_id]["class_type"]})
                entry["dependent_outputs"].append(output_id)
    if not good:
        details = "\n".join(f"{reason['message']}: {reason['details']}" for reason in failures)
        log.info("prompt rejected: %d node(s) with errors", len(node_errors))
        return ValidationResult(False, error("prompt_outputs_failed_validation", "Prompt outputs failed validation",
                                             details), [], node_errors)
    return ValidationResult(True, None, good, node_errors)
