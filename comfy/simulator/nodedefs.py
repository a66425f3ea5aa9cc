"""Node definitions as ComfyUI 0.3.64 reports them in /object_info, with live combo lists.

`node_defs.json` holds the captured definitions of the nodes the simulator knows; the model and
image combo lists are left empty there and filled from the server's inventory and input folder,
exactly where a real server fills them from its model folders.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Iterable

from comfy.simulator.inventory import Inventory

_DEFS_PATH = Path(__file__).with_name("node_defs.json")
PIXEL_SPACE_VAE = "pixel_space"  # VAELoader's always-listed last option on ComfyUI 0.3.64


@cache
def _static_defs() -> dict[str, dict[str, Any]]:
    return json.loads(_DEFS_PATH.read_text(encoding="utf-8"))


def known_node(class_type: str) -> bool:
    """Whether the simulator has a definition for this node class."""
    return class_type in _static_defs()


@dataclass(frozen=True)
class InputSpec:
    """One input of a node: its type (a string or a combo list), its options and category."""

    name: str
    input_type: str | list[str]
    options: dict[str, Any]
    category: str  # "required" | "optional"

    @property
    def config(self) -> list[Any]:
        """The `[type, options]` pair ComfyUI echoes as `input_config` in validation errors."""
        return [self.input_type, self.options]


class NodeCatalog:
    """The definitions of one server: static node shapes + its inventory and uploaded images."""

    def __init__(self, inventory: Inventory, input_images: list[str]) -> None:
        # Built for every prompt and /object_info call: only the nodes with live lists are copied,
        # every other definition is the shared static one (read-only).
        self._defs = dict(_static_defs())
        self._set_combo("CheckpointLoaderSimple", "ckpt_name", inventory.checkpoints)
        self._set_combo("LoraLoader", "lora_name", inventory.loras)
        self._set_combo("LoraLoaderModelOnly", "lora_name", inventory.loras)
        self._set_combo("LoadImage", "image", input_images)
        self._set_combo("UNETLoader", "unet_name", inventory.diffusion_models)
        self._set_combo("CLIPLoader", "clip_name", inventory.text_encoders)
        for index in (1, 2):
            self._set_combo("DualCLIPLoader", f"clip_name{index}", inventory.text_encoders)
        for index in (1, 2, 3):
            self._set_combo("TripleCLIPLoader", f"clip_name{index}", inventory.text_encoders)
        self._set_combo("VAELoader", "vae_name", inventory.vae, last=(PIXEL_SPACE_VAE,))

    def _set_combo(self, class_type: str, input_name: str, values: Iterable[str], last: tuple[str, ...] = ()) -> None:
        definition = copy.deepcopy(self._defs[class_type])
        definition["input"]["required"][input_name][0] = sorted(values) + list(last)
        self._defs[class_type] = definition

    def object_info(self) -> dict[str, Any]:
        """The whole `/object_info` body."""
        return self._defs

    def node(self, class_type: str) -> dict[str, Any] | None:
        return self._defs.get(class_type)

    def inputs(self, class_type: str) -> list[InputSpec]:
        """Required then optional inputs, in the node's declared order (hidden ones excluded)."""
        definition = self._defs[class_type]
        specs = []
        for category in ("required", "optional"):
            declared = definition["input"].get(category, {})
            for name in definition.get("input_order", {}).get(category, list(declared)):
                raw = declared[name]
                specs.append(InputSpec(name, raw[0], raw[1] if len(raw) > 1 else {}, category))
        return specs

    def return_types(self, class_type: str) -> list[str]:
        return self._defs[class_type]["output"]

    def is_output(self, class_type: str) -> bool:
        return bool(self._defs[class_type]["output_node"])
