"""The model files a simulated server pretends to have on disk.

An inventory is plain JSON (default: `assets/sim_inventory.json`) so that a user or a test can
describe another GPU box without touching code. Metadata values are kept exactly as a
`.safetensors` `__metadata__` header would hold them: strings only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SIMULATED_FOLDERS = ("checkpoints", "loras", "diffusion_models", "text_encoders", "vae")
DEFAULT_INVENTORY_PATH = Path(__file__).resolve().parents[2] / "assets" / "sim_inventory.json"


@dataclass(frozen=True)
class ModelFile:
    """One checkpoint or LoRA: name as ComfyUI lists it (may hold `sub/` folders)."""

    name: str
    family: str  # a family of assets/families.toml ("sd15", "sdxl", "flux", ...): the time model's load cost
    metadata: dict[str, str] | None = None  # None → /view_metadata answers 404
    size: int = 0


@dataclass
class Inventory:
    """Model files of one server, per ComfyUI model folder; mutable so faults can remove a checkpoint.

    `diffusion_models`, `text_encoders` and `vae` hold split-file models (UNETLoader, the CLIP
    loaders, VAELoader).
    """

    checkpoints: dict[str, ModelFile] = field(default_factory=dict)
    loras: dict[str, ModelFile] = field(default_factory=dict)
    diffusion_models: dict[str, ModelFile] = field(default_factory=dict)
    text_encoders: dict[str, ModelFile] = field(default_factory=dict)
    vae: dict[str, ModelFile] = field(default_factory=dict)

    def folder(self, folder: str) -> dict[str, ModelFile] | None:
        """The files of a ComfyUI model folder name, or None for folders we do not simulate."""
        return getattr(self, folder, None) if folder in SIMULATED_FOLDERS else None

    def model(self, name: str) -> ModelFile | None:
        """A checkpoint or diffusion model by name (what a sampler's MODEL was loaded from)."""
        return self.checkpoints.get(name) or self.diffusion_models.get(name)

    def copy(self) -> Inventory:
        """An independent copy, so one server's fault does not leak into its siblings."""
        return Inventory(**{folder: dict(getattr(self, folder)) for folder in SIMULATED_FOLDERS})


def _model_file(raw: dict) -> ModelFile:
    """One inventory entry; `family` may be left out for text encoders and VAEs."""
    metadata = raw.get("metadata")
    if metadata is not None:
        metadata = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    return ModelFile(name=raw["name"], family=raw.get("family", ""), metadata=metadata, size=int(raw.get("size", 0)))


def inventory_from_dict(raw: dict) -> Inventory:
    """Build an inventory from the JSON schema of `assets/sim_inventory.json`.

    Non-string metadata values (e.g. `ss_tag_frequency` written as an object for readability)
    are serialised to JSON strings, as safetensors headers store them.
    """
    return Inventory(**{folder: {f.name: f for f in map(_model_file, raw.get(folder, []))}
                        for folder in SIMULATED_FOLDERS})


def load_inventory(path: Path | None = None) -> Inventory:
    """Read an inventory JSON file (the bundled default when `path` is None)."""
    path = path or DEFAULT_INVENTORY_PATH
    inventory = inventory_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    log.info("simulator inventory %s: %d checkpoints, %d loras, %d diffusion models", path, len(inventory.checkpoints),
             len(inventory.loras), len(inventory.diffusion_models))
    return inventory
