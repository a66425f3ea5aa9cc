"""Request and response models of the REST API (and the UI, which builds the same requests).

Validation lives here so the REST API and the Gradio UI refuse the same inputs with the same
readable messages, before anything is written.
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from draftgrid.planning import MAX_SEED
from families.recognise import DEFAULT_FAMILY
from families.registry import registry
from learning.keywords import stem
from learning.models import Tier
from learning.recommend.types import MAX_COUNT
from learning.store.history_sql import DEFAULT_LIMIT, MAX_LIMIT, HistoryFilter
from learning.store.monitoring_sql import MAX_ROWS, MAX_SQL_CHARS

Family = Literal[registry().names]  # type: ignore[valid-type]  # every family of assets/families.toml
AspectRatio = Literal["1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3"]
ASPECT_RATIOS: tuple[str, ...] = AspectRatio.__args__  # type: ignore[attr-defined]


def closest_aspect(width: int, height: int) -> str:
    """The supported aspect ratio nearest to a size (refines keep their parent's shape)."""
    def ratio(label: str) -> float:
        a, b = label.split(":")
        return int(a) / int(b)

    return min(ASPECT_RATIOS, key=lambda label: abs(ratio(label) - width / height))


MAX_PROMPT_CHARS = 2000


def _check_text(value: str, name: str) -> str:
    """Refuse control characters (null bytes and friends) that no prompt needs; keep everything else verbatim."""
    # Cs: a lone surrogate (a JSON "\ud800" escape) is no text and cannot be stored as UTF-8
    bad = [c for c in value if unicodedata.category(c) in ("Cc", "Cs") and c not in "\n\t\r"]
    if bad:
        raise ValueError(f"{name} contains a control or surrogate character ({bad[0]!r}); remove it")
    if len(value) > MAX_PROMPT_CHARS:
        raise ValueError(f"{name} is {len(value)} characters; the limit is {MAX_PROMPT_CHARS}")
    return value


class GenerateRequest(BaseModel):
    """Body of `POST /api/generate/batch`."""

    model_config = ConfigDict(extra="forbid", strict=True)  # JSON true is not a count

    session_id: str = Field(default="default", min_length=1, max_length=128)
    prompt: str = ""
    negative_prompt: str = ""
    count: int = Field(default=20, ge=1, le=MAX_COUNT)
    explore_mode: bool = True
    auto_lora: bool = True
    fast_drafts: bool = True  # the draft tier uses a distilled LoRA / checkpoint when the servers have one
    quality_tags: bool = False  # prefix the family's quality tags (assets/families.toml `quality_prefix`)
    model_family: Family = DEFAULT_FAMILY
    tier: Tier = "draft"
    aspect_ratio: AspectRatio = "1:1"
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    parent_image_ids: list[str] = Field(default_factory=list, max_length=MAX_COUNT)
    width: int | None = Field(default=None, ge=64, le=2048, multiple_of=8)
    height: int | None = Field(default=None, ge=64, le=2048, multiple_of=8)
    steps: int | None = Field(default=None, ge=1, le=150)
    cfg: float | None = Field(default=None, ge=0.0, le=30.0)
    sampler_name: str | None = Field(default=None, max_length=64)
    scheduler: str | None = Field(default=None, max_length=64)

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: str) -> str:
        return _check_text(value, "prompt")

    @model_validator(mode="after")
    def _prompt_needed(self) -> GenerateRequest:
        """A refine may reuse its parents' prompt; a new batch needs one."""
        if not self.parent_image_ids and not self.prompt.strip():
            raise ValueError("prompt is empty; describe the image you want")
        return self

    @field_validator("negative_prompt")
    @classmethod
    def _negative(cls, value: str) -> str:
        return _check_text(value, "negative_prompt")

    @property
    def is_refine(self) -> bool:
        return bool(self.parent_image_ids)


class FeedbackRequest(BaseModel):
    """Body of `POST /api/feedback`: the state the listed images should be in (idempotent)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # JSON true is not a count

    batch_id: str = Field(min_length=1, max_length=64)
    selected: list[str] = Field(default_factory=list, max_length=MAX_COUNT)
    unselected: list[str] = Field(default_factory=list, max_length=MAX_COUNT)
    rejected: list[str] = Field(default_factory=list, max_length=MAX_COUNT)
    reject_all: bool = False
    viewed: bool = False


class SharingRequest(BaseModel):
    """Body of `PUT /api/preferences/sharing`: whether the user's preferences join the crowd pool."""

    model_config = ConfigDict(extra="forbid", strict=True)  # 1 or "yes" is not a choice

    share: bool


class RuleEntry(BaseModel):
    """One rule: a LoRA (`lora`) or negative term (`term`) for a keyword."""

    model_config = ConfigDict(extra="forbid")

    keyword: str = Field(min_length=1, max_length=200)
    lora: str | None = Field(default=None, min_length=1, max_length=500)
    term: str | None = Field(default=None, min_length=1, max_length=200)


class RulesRequest(BaseModel):
    """Body of `PUT /api/loras/vetoes` and `PUT /api/negative-suggestions/dismissed`: every rule
    of that kind the user wants in force (the export of GET, re-imported)."""

    model_config = ConfigDict(extra="forbid")

    rules: list[RuleEntry] = Field(max_length=10_000)


def readable_errors(exc: ValidationError) -> str:
    """One line per problem, field first: what a person (or a script's log) can act on."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


class ResetRequest(BaseModel):
    """Body of `POST /api/preferences/reset`: a keyword, or none to reset everything."""

    model_config = ConfigDict(extra="forbid", strict=True)

    keyword: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("keyword")
    @classmethod
    def _keyword(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = _check_text(value, "keyword").strip()
        if not value:
            raise ValueError("keyword is blank; leave it out to reset everything")
        return value


class MonitoringQueryRequest(BaseModel):
    """Body of `POST /api/monitoring/query`: one SELECT over the monitoring views."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sql: str = Field(min_length=1, max_length=MAX_SQL_CHARS)
    max_rows: int = Field(default=200, ge=1, le=MAX_ROWS)


class HistoryQuery(BaseModel):
    """Query of `GET /api/history`: the caller's earlier images, filtered and paged (newest first).
    `keyword` is a prompt word (stemmed as prompts are); `since`/`until` are ISO dates or times."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(default=None, min_length=1, max_length=MAX_PROMPT_CHARS)
    keyword: str | None = Field(default=None, min_length=1, max_length=200)
    checkpoint: str | None = Field(default=None, min_length=1, max_length=500)
    lora: str | None = Field(default=None, min_length=1, max_length=500)
    tier: Tier | None = None
    selected: bool | None = None
    favourite: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    offset: int = Field(default=0, ge=0, le=10**9)

    @model_validator(mode="after")
    def _dates_in_order(self) -> HistoryQuery:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self

    def to_filter(self) -> HistoryFilter:
        fields = self.model_dump()
        if self.keyword is not None:
            fields["keyword"] = stem(self.keyword.strip().lower())
        return HistoryFilter(**fields)
