"""How long a simulated GPU takes, so scheduling can be benchmarked without a GPU.

Cost of one prompt (seconds, before `scale`):

    load   = checkpoint_load[family]          if the checkpoint differs from the loaded one
           + lora_change                      if the LoRA set (names+strengths) differs
    sample = steps * step_seconds * (width*height / 512²) * batch_size ** batch_exponent
             * cfg_one_factor                  when cfg is 1.0 (ComfyUI then skips the negative pass)
    decode = decode_seconds * (width*height / 512²) * batch_size ** batch_exponent
    (load, sample and decode above are GPU work: each is multiplied by `gpu_factor`)
    prompt = prompt_overhead                    once per executed prompt, whatever its size

The load is paid by the KSampler (that is when ComfyUI moves the model to the GPU), so a prompt
whose checkpoint and LoRAs are already loaded pays only sampling, decoding and the overhead.

`batch_exponent` < 1 models the GPU's batch speed-up: a batch of n costs n**0.8 single images.
`prompt_overhead` is what a real server spends per prompt besides the GPU work above
(validation, the VAE decode's fixed part, PNG encode and save, the client's fetch): on small
images it dwarfs the sampling, which is what a scheduler learning from real servers must cope
with. `gpu_factor` makes one server slower or faster than another (1.5 = 50 % more GPU seconds
for the same work; the per-prompt overhead is not GPU work and is not scaled by it).
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
    cfg_one_factor: float = 0.5  # a step at cfg 1.0 runs the model once, not twice (ComfyUI's cfg1 optimisation)
    prompt_overhead: float = 0.0  # seconds per executed prompt, not scaled by gpu_factor
    gpu_factor: float = 1.0  # this GPU's seconds per nominal GPU second (1.5 = 1.5x slower)
    scale: float = 1.0

    def load_seconds(self, family: str, checkpoint_changed: bool, loras_changed: bool) -> float:
        """Seconds to bring a checkpoint (and LoRA set) onto the GPU."""
        seconds = self.checkpoint_load.get(family, max(self.checkpoint_load.values(), default=0.0)) if checkpoint_changed else 0.0
        seconds += self.lora_change if loras_changed else 0.0
        return seconds * self._gpu()

    def batch_factor(self, batch_size: int) -> float:
        """How many single-image costs a batch of `batch_size` costs."""
        return max(batch_size, 1) ** self.batch_exponent

    def step_seconds_for(self, width: int, height: int, batch_size: int, cfg: float | None = None) -> float:
        """Seconds one sampler step takes for this latent size and batch (and cfg: 1.0 is cheaper)."""
        guidance = self.cfg_one_factor if cfg == 1.0 else 1.0
        return (self.step_seconds * (width * height / REFERENCE_PIXELS) * self.batch_factor(batch_size) * guidance
                * self._gpu())

    def decode_seconds_for(self, width: int, height: int, batch_size: int) -> float:
        """Seconds the VAE decode of a batch takes."""
        return self.decode_seconds * (width * height / REFERENCE_PIXELS) * self.batch_factor(batch_size) * self._gpu()

    def prompt_seconds(self) -> float:
        """The fixed seconds every executed prompt costs on top of its GPU work."""
        return self.prompt_overhead * self.scale

    def txt2img_seconds(self, family: str, steps: int, width: int, height: int, batch_size: int,
                        checkpoint_changed: bool, loras_changed: bool, cfg: float | None = None) -> float:
        """All a txt2img prompt takes (the executor spends these parts one by one, as it runs)."""
        return (self.load_seconds(family, checkpoint_changed, loras_changed)
                + steps * self.step_seconds_for(width, height, batch_size, cfg)
                + self.decode_seconds_for(width, height, batch_size) + self.prompt_seconds())

    def _gpu(self) -> float:
        """What one nominal GPU second takes on this server, in real seconds."""
        return self.gpu_factor * self.scale

    def scaled(self, factor: float) -> TimeModel:
        """The same model with `scale` multiplied by `factor` (the CLI's --speed divides by it)."""
        return replace(self, scale=self.scale * factor)
