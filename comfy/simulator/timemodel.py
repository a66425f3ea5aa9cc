"""How long a simulated GPU takes, so scheduling can be benchmarked without a GPU.

Cost of one prompt (seconds, before `scale`):

    load   = checkpoint_load[family]          if the checkpoint differs from the loaded one
           + lora_change                      if the LoRA set (names+strengths) differs
    sample = steps * step_seconds * (width*height / 512²) * batch_size ** batch_exponent
    decode = decode_seconds * (width*height / 512²) * batch_size ** batch_exponent

The load is paid by the KSampler (that is when ComfyUI moves the model to the GPU), so a prompt
whose checkpoint and LoRAs are already loaded pays only sampling and decoding.

`batch_exponent` < 1 models the GPU's batch speed-up: a batch of n costs n**0.8 single images.
Everything is multiplied by `scale` (1 = realistic, 0 = instant, for tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

REFERENCE_PIXELS = 512 * 512


@dataclass(frozen=True)
class TimeModel:
    """GPU cost parameters; all durations are in seconds at `scale` 1."""

    checkpoint_load: dict[str, float] = field(default_factory=lambda: {"sd15": 3.0, "sdxl": 6.0})
    lora_change: float = 0.3
    step_seconds: float = 0.05
    decode_seconds: float = 0.02
    batch_exponent: float = 0.8
    scale: float = 1.0

    def load_seconds(self, family: str, checkpoint_changed: bool, loras_changed: bool) -> float:
        """Seconds to bring a checkpoint (and LoRA set) onto the GPU."""
        seconds = self.checkpoint_load.get(family, max(self.checkpoint_load.values(), default=0.0)) if checkpoint_changed else 0.0
        seconds += self.lora_change if loras_changed else 0.0
        return seconds * self.scale

    def batch_factor(self, batch_size: int) -> float:
        """How many single-image costs a batch of `batch_size` costs."""
        return max(batch_size, 1) ** self.batch_exponent

    def step_seconds_for(self, width: int, height: int, batch_size: int) -> float:
        """Seconds one sampler step takes for this latent size and batch."""
        return self.step_seconds * (width * height / REFERENCE_PIXELS) * self.batch_factor(batch_size) * self.scale

    def decode_seconds_for(self, width: int, height: int, batch_size: int) -> float:
        """Seconds the VAE decode of a batch takes."""
        return self.decode_seconds * (width * height / REFERENCE_PIXELS) * self.batch_factor(batch_size) * self.scale

    def scaled(self, factor: float) -> TimeModel:
        """The same model with `scale` multiplied by `factor` (the CLI's --speed divides by it)."""
        return replace(self, scale=self.scale * factor)
