"""Application configuration: one pydantic-settings model, every flag with its environment twin.

Each setting is declared once, on `Settings`: its type and limits (pydantic), its command-line flag
and its environment variable (the `Twin` in its annotation). Where a value comes from, strongest
first: the flag, then the environment twin, then the default. `parse_config` is what `app.py`
calls; a bad value raises `ConfigError` whose message is one line naming the flag, its env twin,
the value given and what is allowed (`app.py` prints it and exits with status 2).

Built in code (`AppConfig(port=..., sim_speed=0)`, as tests and benches do) a `Settings` takes its
keywords and defaults only: the environment never leaks into it.

The ComfyUI server list is configuration only — nothing a browser user can change.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

PROG = "app.py"
DEFAULT_DB = Path("data/draftgrid.duckdb")
BOOLEANS = "1/0, true/false, yes/no or on/off"
Policy = Literal["adaptive", "seed", "uniform"]  # learning.recommend.planner.POLICIES (a test keeps them equal)
_UNSET: Any = object()


class ConfigError(ValueError):
    """A flag or environment variable `app.py` cannot start with; the message is one line."""


@dataclass(frozen=True)
class Twin:
    """How a setting is given from outside: its flag and its environment variable."""

    flag: str
    env: str | None
    allowed: str  # what the error message says is allowed
    help: str
    metavar: str | None = None
    many: bool = False  # a repeatable flag; comma-separated in the environment
    switch: Any = _UNSET  # an on/off flag without a value: the value it sets
    fallbacks: tuple[str, ...] = ()  # more variables read, in order, when `env` is not set
    on_space: str | None = None  # the value on a Hugging Face Space (SPACE_ID set) when nothing else says
    secret: bool = False  # error messages hide what follows the first ':' of a bad value
    default_text: str | None = None  # the default as --help shows it (None: the field's default)


# --- value checks (a ValueError becomes the one-line message) -------------------------------------


def _comfy_url(value: str) -> str:
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url) \
            or parts.query or parts.fragment:
        raise ValueError("not an http(s) URL with a host")
    if parts.port == 0:  # urlsplit itself raises on a port that is not a number from 0 to 65535
        raise ValueError("port 0")
    return url.rstrip("/")


def _user_password(value: Any) -> Any:
    if isinstance(value, str):
        user, sep, password = value.partition(":")
        if not sep or not user.strip() or not password:
            raise ValueError("expected user:password")
        return user.strip(), password
    return value


def _existing_file(path: Path) -> Path:
    if not path.is_file():
        raise ValueError("no such file")
    return path


def _not_a_directory(path: Path) -> Path:
    if str(path) == "" or (str(path) != ":memory:" and path.is_dir()):
        raise ValueError("a folder, not a file")
    return path


def _not_a_file(path: Path) -> Path:
    if str(path) == "" or path.is_file():
        raise ValueError("a file, not a folder")
    return path


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("not finite")
    return value


ComfyUrl = Annotated[str, AfterValidator(_comfy_url)]
Credentials = Annotated[tuple[str, str], BeforeValidator(_user_password)]
Positive = Annotated[float, Field(gt=0), AfterValidator(_finite)]  # a finite number > 0


class Settings(BaseSettings):
    """Everything `app.py` needs to build and launch DraftGrid; see the module docstring."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_default=True)

    comfy_urls: Annotated[tuple[ComfyUrl, ...], Twin(
        "--comfy", "COMFYUI_URLS", "http:// or https:// URLs with a host, e.g. http://gpu1:8188",
        "ComfyUI server URL, one per GPU (repeat the flag; COMFYUI_URLS is comma-separated). "
        "None given: start the built-in simulator.", metavar="URL", many=True)] = ()
    comfy_timeout: Annotated[Positive, Twin(
        "--comfy-timeout", "DRAFTGRID_COMFY_TIMEOUT", "a number of seconds > 0",
        "seconds without an answer or progress event before a ComfyUI server counts as hung",
        metavar="S")] = 30.0
    sim_gpus: Annotated[int, Field(ge=1), Twin(
        "--sim-gpus", "DRAFTGRID_SIM_GPUS", "a whole number >= 1", "simulated GPUs when no --comfy is given",
        metavar="N")] = 2
    sim_speed: Annotated[float, Field(ge=0), Twin(
        "--sim-speed", "DRAFTGRID_SIM_SPEED", "a number >= 0 (1 = realistic, 10 = ten times faster, 0 = instant)",
        "simulator speed-up: 1 = the realistic GPU time model, 10 = ten times faster, 0 = instant",
        metavar="X")] = 1.0
    sim_inventory: Annotated[Annotated[Path, AfterValidator(_existing_file)] | None, Twin(
        "--sim-inventory", "DRAFTGRID_SIM_INVENTORY", "an existing JSON file",
        "simulated checkpoints / LoRAs and their metadata",
        metavar="FILE", default_text="assets/sim_inventory.json")] = None
    sim_previews: Annotated[bool, Twin(
        "--no-sim-previews", None, "", "the simulator sends no live preview frames", switch=False)] = True
    db_path: Annotated[Path, AfterValidator(_not_a_directory), Twin(
        "--db", "DRAFTGRID_DB", "a database file path (not a folder), or :memory:",
        "the DuckDB preference database; on hosted platforms point it at persistent storage",
        metavar="PATH")] = DEFAULT_DB
    data_dir: Annotated[Path, AfterValidator(_not_a_file), Twin(
        "--data-dir", "DRAFTGRID_DATA", "a folder path (not a file)",
        "folder for generated images", metavar="DIR",
        default_text="beside the database")] = DEFAULT_DB.parent
    pools_file: Annotated[Annotated[Path, AfterValidator(_existing_file)] | None, Twin(
        "--pools", "DRAFTGRID_POOLS", "an existing TOML file",
        "checkpoint pools per family and tier", metavar="FILE",
        default_text="assets/pools.toml")] = None
    host: Annotated[str, Field(pattern=r"^\S+$"), Twin(
        "--host", "DRAFTGRID_HOST", "a host name or IP address without spaces",
        "address to listen on (also GRADIO_SERVER_NAME; 0.0.0.0 on a Hugging Face Space)",
        fallbacks=("GRADIO_SERVER_NAME",), on_space="0.0.0.0")] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535), Twin(
        "--port", "DRAFTGRID_PORT", "a whole number from 1 to 65535",
        "port to listen on (also GRADIO_SERVER_PORT, PORT)", fallbacks=("GRADIO_SERVER_PORT", "PORT"))] = 7860
    share: Annotated[bool, Twin(
        "--share", "DRAFTGRID_SHARE", BOOLEANS, f"create a public Gradio share link (the env twin takes {BOOLEANS})",
        switch=True, default_text="off")] = False
    auth: Annotated[tuple[Credentials, ...], Twin(
        "--auth", "DRAFTGRID_AUTH", "user:password with both parts non-empty (comma-separated in DRAFTGRID_AUTH)",
        "require a login for the UI and the REST API (repeatable; DRAFTGRID_AUTH is comma-separated)",
        metavar="USER:PASS", many=True, secret=True)] = ()
    admins: Annotated[tuple[Annotated[str, Field(pattern=r"^[^\s,:]+$")], ...], Twin(
        "--admin", "DRAFTGRID_ADMINS", "a user name without spaces, commas or colons (comma-separated in "
        "DRAFTGRID_ADMINS)", "a user whose monitoring queries and snapshots cover every user's rows "
        "(repeatable); everyone else sees their own", metavar="USER", many=True)] = ()
    share_preferences: Annotated[bool, Twin(
        "--share-preferences", "DRAFTGRID_SHARE_PREFERENCES", BOOLEANS,
        "pool the preferences of users who opt in (Stats tab or PUT /api/preferences/sharing) as a weak prior "
        f"for every user's cold start (the env twin takes {BOOLEANS})", switch=True, default_text="off")] = False
    policy: Annotated[Policy, Twin(
        "--policy", "DRAFTGRID_POLICY", "adaptive, seed or uniform", "checkpoint recommendation policy")] = "adaptive"
    half_life: Annotated[Positive, Twin(  # reviews; tuned with bench/bench_policies.py (docs/BENCHMARKS.md)
        "--half-life", "DRAFTGRID_HALF_LIFE", "a number > 0",
        "how many reviewed batches until old preferences count half", metavar="N")] = 100.0
    max_image_disk_mb: Annotated[int, Field(ge=1), Twin(
        "--max-image-disk-mb", "DRAFTGRID_MAX_IMAGE_DISK_MB", "a whole number of megabytes >= 1",
        "disk the generated images may use, in MB (the free Hugging Face Space disk is 50 GB, its smallest "
        "persistent storage 20 GB)", metavar="N")] = 10_000
    keep_drafts_days: Annotated[Positive, Twin(
        "--keep-drafts-days", "DRAFTGRID_KEEP_DRAFTS_DAYS", "a number of days > 0",
        "how many days draft images are kept", metavar="D")] = 30.0
    # not given from outside
    max_batch: Annotated[int, Field(ge=1)] = 4  # images per ComfyUI prompt; the pool schedules these chunks
    health_interval: Positive = 5.0  # seconds between health checks (a dead server rejoins on the next)

    @model_validator(mode="before")
    @classmethod
    def _data_dir_beside_db(cls, data: Any) -> Any:
        """No --data-dir / DRAFTGRID_DATA: images go beside the database."""
        if isinstance(data, dict) and data.get("data_dir") in (None, ""):
            data = {**data, "data_dir": Path(str(data.get("db_path") or DEFAULT_DB)).parent}
        return data

    @property
    def simulated(self) -> bool:
        """No ComfyUI URL given: the built-in simulator serves instead of real GPUs."""
        return not self.comfy_urls

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)  # built in code: keywords and defaults only


AppConfig = Settings  # the name bootstrap.py, launch.py, the tests and the benches use


class _Launched(Settings):
    """Settings as `python app.py` gets them: flags (passed as keywords) > environment twins > defaults."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, EnvTwins(settings_cls))


def twins() -> dict[str, Twin]:
    """Field name → Twin, for every setting given from outside, in declaration order."""
    return {name: twin for name, field in Settings.model_fields.items() if (twin := _twin(field)) is not None}


def _twin(field: FieldInfo) -> Twin | None:
    return next((m for m in field.metadata if isinstance(m, Twin)), None)


def env_value(twin: Twin, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(variable, raw value) of the first of the twin's variables that is set and not blank."""
    for name in (twin.env, *twin.fallbacks) if twin.env else ():
        raw = environ.get(name, "").strip()
        if raw:
            return name, raw
    if twin.on_space is not None and environ.get("SPACE_ID", "").strip():
        return "SPACE_ID", twin.on_space
    return None


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


class EnvTwins(PydanticBaseSettingsSource):
    """Each setting's environment twin (and its fallbacks), as raw strings for pydantic to validate."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        twin = _twin(field)
        found = env_value(twin, os.environ) if twin else None
        if found is None:
            return None, field_name, False
        return (_split(found[1]) if twin and twin.many else found[1]), field_name, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name, field in self.settings_cls.model_fields.items():
            value, _key, _complex = self.get_field_value(field, name)
            if value is not None:
                values[name] = value
        return values


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (python {PROG} --help lists every flag)")


def build_parser() -> argparse.ArgumentParser:
    """The flags, straight from `Settings`: values stay strings for pydantic; absent flags stay absent."""
    p = _Parser(prog=PROG, argument_default=argparse.SUPPRESS,
                description="DraftGrid: a grid of fast Stable Diffusion drafts that learns your taste. "
                            "Every flag has an environment twin; a flag wins over its twin.")
    for name, twin in twins().items():
        default = Settings.model_fields[name].default
        shown = twin.default_text or ("" if default in (None, ()) or twin.switch is not _UNSET else str(default))
        env = f"env {twin.env}" if twin.env else "no env twin"
        help_text = f"{twin.help} [{env}{'; default ' + shown if shown else ''}]".replace("%", "%%")
        if twin.switch is not _UNSET:
            p.add_argument(twin.flag, dest=name, action="store_const", const=twin.switch, help=help_text)
        else:
            p.add_argument(twin.flag, dest=name, action="append" if twin.many else "store", metavar=twin.metavar,
                           help=help_text)
    return p


def parse_config(argv: Sequence[str] | None = None) -> Settings:
    """Flags (default: sys.argv[1:]) over their environment twins over the defaults, validated.

    Raises ConfigError (one line) for a bad flag or value; `--help` exits as argparse does."""
    flags = vars(build_parser().parse_args(argv))
    try:
        launched = _Launched(**flags)
    except ValidationError as exc:
        raise ConfigError(_one_line(exc, flags, os.environ)) from None
    return Settings(**dict(launched))  # a plain Settings, equal to one built in code with the same values


def _one_line(exc: ValidationError, flags: dict[str, Any], environ: Mapping[str, str]) -> str:
    known = twins()
    parts = []
    for error in exc.errors():
        loc = error["loc"]
        twin = known.get(str(loc[0])) if loc else None
        if twin is None:
            parts.append(error["msg"])
            continue
        bad = _shown(error["input"], twin)
        if loc[0] in flags:
            got = f"{twin.flag} {bad}"
        else:
            name, _raw = env_value(twin, environ) or (twin.env, "")
            got = f"{bad} in {name}" if twin.many else f"{name}={bad}"
        parts.append(f"bad {twin.flag} (env {twin.env}): got {got}; allowed: {twin.allowed}")
    return "; ".join(parts).replace("\r", "\\r").replace("\n", "\\n")


def _shown(value: Any, twin: Twin) -> str:
    text = value if isinstance(value, str) else str(value)
    if twin.secret and ":" in text:
        text = text.partition(":")[0] + ":***"
    return repr(text if len(text) <= 80 else text[:77] + "...")
