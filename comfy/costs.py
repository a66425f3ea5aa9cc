"""What a prompt costs on one server, and how that is learnt from its measured prompts — pure.

Why terms and not one factor: a prompt's seconds are a sum of parts that vary independently —
a checkpoint load (seconds, only when the checkpoint changes), a LoRA change, a fixed overhead
per prompt (validation, VAE decode's fixed part, PNG save, the fetch) and the sampling (time per
step × pixels, with a batch of n costing n**e single images on a GPU). One speed factor,
measured / nominal, learnt across all of them explodes on real servers: a small job without a
load is nominally a few milliseconds but takes seconds of overhead, so the factor jumps 100×
and that server's next estimate (a load, a batch) looks so slow it is never chosen again
(issue 10). So each term is learnt on its own, per server:

- Prompts that loaded nothing give the overhead and the sampling terms: for each candidate batch
  exponent, a Theil–Sen line (the median of the pairwise slopes, then the median intercept)
  through seconds against work × batch**e; the exponent whose line has the smallest median
  absolute residual wins, the prior's unless another is clearly better (10 %). With only one
  kind of job seen, the line is not determined: both terms are scaled alike from the prior, so
  the split between them stays the prior's (its overhead is what keeps a small job's factor
  bounded: seconds against a prior of 0.3 s, not against milliseconds of sampling).
- Prompts that loaded something give the load (per family) and the LoRA change: the median of
  what they took beyond the fitted overhead and sampling. Before any prompt that loaded nothing
  (a server's very first prompt loads its checkpoint) the prior is scaled as a whole by what they
  took: a load is seconds nominally, so this ratio cannot explode the way a small job's does.

Medians resist outliers (a GC pause, a machine busy for a moment); only the newest `WINDOW`
prompts of each kind count, so a server that changes is followed; every term is clamped to a
plausible range, so no estimate can run away. Nothing is learnt until a server finished a
prompt: until then it is the prior (the nominal model, or a measured peer's, see the pool).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from itertools import combinations

from comfy.models import PoolJob
from comfy.workflow import HIRES_DENOISE, hires_steps

GroupKey = tuple[str, tuple[tuple[str, float], ...]]  # checkpoint, LoRAs with strengths
REFERENCE_PIXELS = 512 * 512
WINDOW = 16  # newest prompts of each kind (loaded nothing / loaded something) a fit uses
EXPONENTS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # batch exponents a fit may choose from
CLEARLY_BETTER = 0.9  # another exponent must cut the median residual by 10 % to replace the prior's
DISTINCT = 0.01  # two jobs' work differs when by more than 1 %: only then is a slope measurable
MAX_OVERHEAD = 60.0  # seconds per prompt
MAX_LOAD = 300.0  # seconds per checkpoint load
MAX_LORA_CHANGE = 30.0
STEP_RANGE = 100.0  # the step time stays within prior / 100 .. prior × 100
CFG_ONE_WORK = 0.5  # what a step at cfg 1.0 costs against one at any other cfg


def group_key(job: PoolJob) -> GroupKey:
    """Jobs with the same key run back to back without reloading anything (`PoolJob.group`)."""
    return job.group


def work_units(job: PoolJob) -> float:
    """Sampler steps × pixels / 512² of one image of the job (both passes when hires is set),
    halved at cfg 1.0: ComfyUI then runs the model once per step, not twice (no negative pass),
    which is what makes distilled drafts (Lightning, Hyper-SD at cfg 1) cheap — and a learner that
    counted them as full steps would fit one line through two kinds of step."""
    spec = job.spec
    denoise = spec.refine_from.denoise if spec.refine_from is not None else spec.denoise
    first = max(1.0, spec.steps * denoise) * spec.width * spec.height / REFERENCE_PIXELS
    second = 0.0
    if spec.hires_scale:
        second = hires_steps(spec.steps) * HIRES_DENOISE * spec.width * spec.height * spec.hires_scale**2 / REFERENCE_PIXELS
    return (first + second) * (CFG_ONE_WORK if spec.cfg == 1.0 else 1.0)


def changes(job: PoolJob, loaded: GroupKey | None) -> tuple[bool, bool]:
    """(checkpoint changes, LoRA set changes) going from `loaded` to what `job` needs. A first
    prompt without LoRAs on a fresh server changes no LoRA set."""
    key = group_key(job)
    checkpoint = loaded is None or loaded[0] != key[0]
    loras = (loaded is None or loaded[1] != key[1]) and bool(key[1] or loaded)
    return checkpoint, loras


@dataclass(frozen=True)
class CostModel:
    """Estimated seconds of a job on one server: the nominal GPU's, or one server's as learnt."""

    checkpoint_load: Mapping[str, float] = field(default_factory=lambda: {"sd15": 3.0, "sdxl": 6.0})
    lora_change: float = 0.3
    prompt_overhead: float = 0.3  # per prompt, whatever its size: validation, decode, save, fetch
    step_seconds: float = 0.05  # one sampler step of one 512² image
    batch_exponent: float = 0.8  # a batch of n costs n**0.8 single images on a GPU

    def load_seconds(self, family: str) -> float:
        return self.checkpoint_load.get(family, max(self.checkpoint_load.values(), default=0.0))

    def switch_seconds(self, job: PoolJob, loaded: GroupKey | None) -> float:
        """Seconds to get from what is loaded to what the job needs."""
        checkpoint, loras = changes(job, loaded)
        return (self.load_seconds(job.family) if checkpoint else 0.0) + (self.lora_change if loras else 0.0)

    def sample_seconds(self, job: PoolJob) -> float:
        """Seconds of sampling for the whole job (both passes when hires is set)."""
        return self._sampling(work_units(job), job.spec.batch_size)

    def _sampling(self, work: float, batch: int) -> float:
        return work * self.step_seconds * max(batch, 1) ** self.batch_exponent

    def job_seconds(self, job: PoolJob, loaded: GroupKey | None) -> float:
        return self.switch_seconds(job, loaded) + self.prompt_overhead + self.sample_seconds(job)

    def base_seconds(self, observation: Observation) -> float:
        """What an observed prompt cost besides its loads: overhead and sampling."""
        return self.prompt_overhead + self._sampling(observation.work, observation.batch)

    def observed_seconds(self, observation: Observation) -> float:
        """What this model says an observed prompt costs, loads included."""
        return (self.base_seconds(observation) + (self.load_seconds(observation.family) if observation.checkpoint_load else 0.0)
                + (self.lora_change if observation.lora_change else 0.0))

    def differs(self, other: CostModel, tolerance: float) -> bool:
        """Whether some term of `other` is more than `tolerance` (relative) away from this one's,
        or the batch exponent differs. When no term moved that far, no job's estimate moved more
        than that either (a job's seconds are a sum of these terms), so this bounds the change of
        any plan's estimates without looking at a single job."""
        if other.batch_exponent != self.batch_exponent or other.checkpoint_load.keys() != self.checkpoint_load.keys():
            return True
        pairs = [(self.lora_change, other.lora_change), (self.prompt_overhead, other.prompt_overhead),
                 (self.step_seconds, other.step_seconds),
                 *((load, other.checkpoint_load[family]) for family, load in self.checkpoint_load.items())]
        return any(abs(new - old) > tolerance * abs(old) for old, new in pairs)

    def scaled(self, factor: float) -> CostModel:
        """Every term × `factor`: a server uniformly that much slower (> 1) or faster."""
        return replace(self, checkpoint_load={k: v * factor for k, v in self.checkpoint_load.items()},
                       lora_change=self.lora_change * factor, prompt_overhead=self.prompt_overhead * factor,
                       step_seconds=self.step_seconds * factor)


@dataclass(frozen=True)
class Observation:
    """One finished prompt: what it had to do and how long it took."""

    family: str
    checkpoint_load: bool
    lora_change: bool
    work: float  # work_units of one image
    batch: int
    seconds: float

    @classmethod
    def of(cls, job: PoolJob, loaded: GroupKey | None, seconds: float) -> Observation:
        checkpoint, loras = changes(job, loaded)
        return cls(job.family, checkpoint, loras, work_units(job), max(job.spec.batch_size, 1), seconds)

    @property
    def loaded_something(self) -> bool:
        return self.checkpoint_load or self.lora_change


@dataclass(frozen=True)
class CostLearner:
    """One server's cost model, fitted to its newest measured prompts (see the module docstring)."""

    prior: CostModel = field(default_factory=CostModel)
    plain: tuple[Observation, ...] = ()  # newest prompts that loaded nothing
    switching: tuple[Observation, ...] = ()  # newest prompts that loaded a checkpoint or LoRAs
    model: CostModel = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", fit(self.prior, self.plain, self.switching))

    @property
    def measured(self) -> bool:
        return bool(self.plain or self.switching)

    def observed(self, observation: Observation) -> CostLearner:
        """This learner with one more measured prompt."""
        if observation.loaded_something:
            return replace(self, switching=(self.switching + (observation,))[-WINDOW:])
        return replace(self, plain=(self.plain + (observation,))[-WINDOW:])


def fit(prior: CostModel, plain: Iterable[Observation], switching: Iterable[Observation]) -> CostModel:
    """The cost model these observations show, starting from `prior` for what they do not."""
    plain, switching = list(plain), list(switching)
    if plain:
        model = _fit_sampling(prior, plain)
    elif switching:  # loads only, nothing to tell the terms apart yet: the prior scaled as a whole
        ratio = statistics.median(o.seconds / max(prior.observed_seconds(o), 1e-9) for o in switching)
        model = prior.scaled(_clamp(ratio, 1 / STEP_RANGE, STEP_RANGE))
    else:
        return prior
    lora_only = [o.seconds - model.base_seconds(o) for o in switching if o.lora_change and not o.checkpoint_load]
    if lora_only:
        model = replace(model, lora_change=_clamp(statistics.median(lora_only), 0.0, MAX_LORA_CHANGE))
    loads = dict(model.checkpoint_load)
    for family in sorted({o.family for o in switching if o.checkpoint_load}):
        extra = [o.seconds - model.base_seconds(o) - (model.lora_change if o.lora_change else 0.0)
                 for o in switching if o.checkpoint_load and o.family == family]
        loads[family] = _clamp(statistics.median(extra), 0.0, MAX_LOAD)
    return replace(model, checkpoint_load=loads)


def _fit_sampling(prior: CostModel, plain: list[Observation]) -> CostModel:
    """Overhead, step time and batch exponent from prompts that loaded nothing."""
    best = _line(prior, plain, prior.batch_exponent)
    for exponent in EXPONENTS:
        candidate = _line(prior, plain, exponent)
        if candidate[0] < CLEARLY_BETTER * best[0]:
            best = candidate
    return best[1]


def _line(prior: CostModel, plain: list[Observation], exponent: float) -> tuple[float, CostModel]:
    """The robust line seconds = overhead + step × work × batch**exponent, and its median
    absolute residual."""
    points = [(o.work * o.batch**exponent, o.seconds) for o in plain]
    slopes = [(s2 - s1) / (x2 - x1) for (x1, s1), (x2, s2) in combinations(points, 2)
              if abs(x2 - x1) > DISTINCT * max(x1, x2)]
    low, high = prior.step_seconds / STEP_RANGE, prior.step_seconds * STEP_RANGE
    if slopes:
        step = _clamp(statistics.median(slopes), low, high)
        overhead = _clamp(statistics.median(s - step * x for x, s in points), 0.0, MAX_OVERHEAD)
    else:  # one kind of job: both terms scaled alike from the prior, so the split stays the prior's
        typical = statistics.median(s for _, s in points) / (prior.prompt_overhead + prior.step_seconds * points[0][0])
        step = _clamp(prior.step_seconds * typical, low, high)
        overhead = _clamp(prior.prompt_overhead * typical, 0.0, MAX_OVERHEAD)
    residual = statistics.median(abs(s - overhead - step * x) for x, s in points)
    return residual, replace(prior, prompt_overhead=overhead, step_seconds=step, batch_exponent=exponent)


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
