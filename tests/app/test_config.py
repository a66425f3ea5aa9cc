"""Flags and their environment twins (including what a Hugging Face Space sets): precedence, and
one readable line with exit status 2 for every bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from draftgrid.config import AppConfig, ConfigError, Policy, Twin, parse_config, twins
from learning.recommend.planner import POLICIES

REPO = Path(__file__).resolve().parents[2]
INVENTORY, POOLS = REPO / "assets" / "sim_inventory.json", REPO / "assets" / "pools.toml"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No twin (nor SPACE_ID) from the machine running the tests."""
    for twin in twins().values():
        for name in (twin.env, *twin.fallbacks):
            if name:
                monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)


def test_defaults_start_the_simulator_locally() -> None:
    config = parse_config([])
    assert config.simulated and config.host == "127.0.0.1" and config.port == 7860
    assert config.db_path == Path("data/draftgrid.duckdb") and config.data_dir == Path("data") and config.auth == ()
    assert (config.share, config.policy, config.sim_gpus, config.sim_speed, config.comfy_timeout) == (
        False, "adaptive", 2, 1.0, 30.0)
    assert config.max_image_disk_mb == 10_000 and config.keep_drafts_days == 30.0  # the disk retention settings
    assert config == AppConfig()  # what a test or bench builds in code has the same defaults


def test_flags_and_env_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMFYUI_URLS", "http://a:8188, http://b:8188/")
    monkeypatch.setenv("DRAFTGRID_AUTH", "ann:pw1,bob:pw2")
    monkeypatch.setenv("SPACE_ID", "someone/draftgrid")
    config = parse_config(["--db", "/data/x.duckdb"])
    assert config.comfy_urls == ("http://a:8188", "http://b:8188") and not config.simulated
    assert config.auth == (("ann", "pw1"), ("bob", "pw2")) and config.host == "0.0.0.0"
    assert config.db_path == Path("/data/x.duckdb") and config.data_dir == Path("/data")
    assert parse_config(["--comfy", "http://c:8188"]).comfy_urls == ("http://c:8188",)


# field: (environment value, what it gives, flag arguments, what they give)
PRECEDENCE = {
    "comfy_urls": ("http://a:1,https://b", ("http://a:1", "https://b"),
                   ["--comfy", "http://c:3/", "--comfy", "http://d:4"], ("http://c:3", "http://d:4")),
    "comfy_timeout": ("5", 5.0, ["--comfy-timeout", "7.5"], 7.5),
    "sim_gpus": ("3", 3, ["--sim-gpus", "4"], 4),
    "sim_speed": ("0", 0.0, ["--sim-speed", "10"], 10.0),
    "sim_inventory": (str(INVENTORY), INVENTORY, ["--sim-inventory", str(POOLS)], POOLS),
    "sim_previews": (None, True, ["--no-sim-previews"], False),
    "db_path": ("/env/a.duckdb", Path("/env/a.duckdb"), ["--db", "/flag/b.duckdb"], Path("/flag/b.duckdb")),
    "data_dir": ("/env/images", Path("/env/images"), ["--data-dir", "/flag/images"], Path("/flag/images")),
    "pools_file": (str(POOLS), POOLS, ["--pools", str(INVENTORY)], INVENTORY),
    "host": ("10.0.0.1", "10.0.0.1", ["--host", "0.0.0.0"], "0.0.0.0"),
    "port": ("8000", 8000, ["--port", "9000"], 9000),
    "share": ("no", False, ["--share"], True),
    "share_preferences": ("no", False, ["--share-preferences"], True),
    "auth": ("ann:pw1, bob:p:w", (("ann", "pw1"), ("bob", "p:w")), ["--auth", "cid:x"], (("cid", "x"),)),
    "admins": ("ann, bob", ("ann", "bob"), ["--admin", "root"], ("root",)),
    "policy": ("seed", "seed", ["--policy", "uniform"], "uniform"),
    "half_life": ("50", 50.0, ["--half-life", "25"], 25.0),
    "max_image_disk_mb": ("20000", 20_000, ["--max-image-disk-mb", "500"], 500),
    "keep_drafts_days": ("7", 7.0, ["--keep-drafts-days", "0.5"], 0.5),
}


def test_every_setting_has_a_precedence_case() -> None:
    assert set(PRECEDENCE) == set(twins())


@pytest.mark.parametrize("field", sorted(PRECEDENCE))
def test_flag_over_env_over_default(field: str, monkeypatch: pytest.MonkeyPatch) -> None:
    env_raw, from_env, argv, from_flag = PRECEDENCE[field]
    twin = twins()[field]
    default = getattr(parse_config([]), field)
    assert default not in (from_env, from_flag) or field in ("share", "share_preferences", "sim_previews")
    assert getattr(parse_config(argv), field) == from_flag  # flag, no env
    if twin.env is None:
        return
    monkeypatch.setenv(twin.env, env_raw)
    assert getattr(parse_config([]), field) == from_env  # env over default
    assert getattr(parse_config(argv), field) == from_flag  # flag over env
    monkeypatch.setenv(twin.env, "   ")
    assert getattr(parse_config([]), field) == default  # a blank variable counts as unset


def test_env_fallbacks_a_space_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "7000")
    assert parse_config([]).port == 7000
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7100")
    assert parse_config([]).port == 7100
    monkeypatch.setenv("DRAFTGRID_PORT", "7200")
    assert parse_config([]).port == 7200
    monkeypatch.setenv("SPACE_ID", "someone/draftgrid")
    assert parse_config([]).host == "0.0.0.0"
    monkeypatch.setenv("GRADIO_SERVER_NAME", "10.1.1.1")
    assert parse_config([]).host == "10.1.1.1"
    monkeypatch.setenv("DRAFTGRID_HOST", "10.2.2.2")
    assert parse_config([]).host == "10.2.2.2"
    assert parse_config(["--host", "127.0.0.1"]).host == "127.0.0.1"


@pytest.mark.parametrize("raw,value", [("1", True), ("0", False), ("true", True), ("False", False), ("yes", True),
                                       ("NO", False), ("on", True), ("off", False)])
def test_share_takes_the_usual_booleans(raw: str, value: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAFTGRID_SHARE", raw)
    assert parse_config([]).share is value


def test_code_built_settings_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMFYUI_URLS", "http://gpu1:8188")
    monkeypatch.setenv("DRAFTGRID_SHARE", "1")
    config = AppConfig(port=1234)
    assert config.simulated and not config.share and config.port == 1234
    assert parse_config([]).comfy_urls == ("http://gpu1:8188",)


def test_the_policy_choices_are_the_planners() -> None:
    assert set(get_args(Policy)) == set(POLICIES)


# (flag arguments, environment, the line's "got ..." part, the flag whose twin is named)
BAD = [
    ([], {"DRAFTGRID_SIM_GPUS": "two"}, "DRAFTGRID_SIM_GPUS='two'", "--sim-gpus"),
    (["--sim-gpus", "0"], {}, "--sim-gpus '0'", "--sim-gpus"),
    ([], {"DRAFTGRID_SHARE": "maybe"}, "DRAFTGRID_SHARE='maybe'", "--share"),
    ([], {"DRAFTGRID_SHARE": "2"}, "DRAFTGRID_SHARE='2'", "--share"),
    (["--port", "99999"], {}, "--port '99999'", "--port"),
    ([], {"PORT": "http"}, "PORT='http'", "--port"),
    (["--sim-speed", "-1"], {}, "--sim-speed '-1'", "--sim-speed"),
    ([], {"DRAFTGRID_SIM_SPEED": "nan"}, "DRAFTGRID_SIM_SPEED='nan'", "--sim-speed"),
    (["--policy", "greedy"], {}, "--policy 'greedy'", "--policy"),
    ([], {"DRAFTGRID_POLICY": "Adaptive"}, "DRAFTGRID_POLICY='Adaptive'", "--policy"),
    (["--comfy", "gpu1:8188"], {}, "--comfy 'gpu1:8188'", "--comfy"),
    (["--comfy", "http://gpu1:99999"], {}, "--comfy 'http://gpu1:99999'", "--comfy"),
    (["--comfy", "http://"], {}, "--comfy 'http://'", "--comfy"),
    ([], {"COMFYUI_URLS": "http://a:8188,ftp://b"}, "'ftp://b' in COMFYUI_URLS", "--comfy"),
    (["--comfy-timeout", "0"], {}, "--comfy-timeout '0'", "--comfy-timeout"),
    ([], {"DRAFTGRID_HALF_LIFE": "soon"}, "DRAFTGRID_HALF_LIFE='soon'", "--half-life"),
    (["--max-image-disk-mb", "0"], {}, "--max-image-disk-mb '0'", "--max-image-disk-mb"),
    ([], {"DRAFTGRID_MAX_IMAGE_DISK_MB": "10GB"}, "DRAFTGRID_MAX_IMAGE_DISK_MB='10GB'", "--max-image-disk-mb"),
    (["--keep-drafts-days", "0"], {}, "--keep-drafts-days '0'", "--keep-drafts-days"),
    ([], {"DRAFTGRID_KEEP_DRAFTS_DAYS": "-3"}, "DRAFTGRID_KEEP_DRAFTS_DAYS='-3'", "--keep-drafts-days"),
    (["--auth", "nopassword"], {}, "--auth 'nopassword'", "--auth"),
    (["--admin", "ann:pw"], {}, "--admin 'ann:pw'", "--admin"),
    ([], {"DRAFTGRID_ADMINS": "ann,the boss"}, "'the boss' in DRAFTGRID_ADMINS", "--admin"),
    (["--sim-inventory", "no/such.json"], {}, "--sim-inventory 'no/such.json'", "--sim-inventory"),
    ([], {"DRAFTGRID_POOLS": "no/such.toml"}, "DRAFTGRID_POOLS='no/such.toml'", "--pools"),
    (["--db", "assets"], {}, "--db 'assets'", "--db"),
    (["--data-dir", "README.md"], {}, "--data-dir 'README.md'", "--data-dir"),
    (["--host", "my host"], {}, "--host 'my host'", "--host"),
]


def by_flag(flag: str) -> Twin:
    return next(t for t in twins().values() if t.flag == flag)


@pytest.mark.parametrize("argv,env,got,flag", BAD, ids=[f"{a or e}" for a, e, _g, _f in BAD])
def test_a_bad_value_is_one_line_naming_flag_env_value_and_what_is_allowed(
        argv: list[str], env: dict[str, str], got: str, flag: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # the relative paths above
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    twin = by_flag(flag)
    with pytest.raises(ConfigError) as refused:
        parse_config(argv)
    assert str(refused.value) == f"bad {flag} (env {twin.env}): got {got}; allowed: {twin.allowed}"


def test_exact_messages_for_the_usual_mistakes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAFTGRID_SIM_GPUS", "two")
    with pytest.raises(ConfigError, match=r"^bad --sim-gpus \(env DRAFTGRID_SIM_GPUS\): got DRAFTGRID_SIM_GPUS='two'; "
                                          r"allowed: a whole number >= 1$"):
        parse_config([])
    with pytest.raises(ConfigError, match=r"^bad --share \(env DRAFTGRID_SHARE\): got DRAFTGRID_SHARE='maybe'; "
                                          r"allowed: 1/0, true/false, yes/no or on/off$"):
        monkeypatch.setenv("DRAFTGRID_SHARE", "maybe")
        parse_config(["--sim-gpus", "2"])


def test_several_bad_values_still_make_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAFTGRID_SIM_GPUS", "a\nb")
    with pytest.raises(ConfigError) as refused:
        parse_config(["--port", "0"])
    line = str(refused.value)
    assert "\n" not in line and "DRAFTGRID_SIM_GPUS='a\\nb'" in line and "--port '0'" in line


def test_a_bad_login_does_not_show_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAFTGRID_AUTH", "ann:pw1,:s3cret")
    with pytest.raises(ConfigError, match="user:password") as refused:
        parse_config([])
    assert "s3cret" not in str(refused.value) and "':***' in DRAFTGRID_AUTH" in str(refused.value)


@pytest.mark.parametrize("argv,message", [(["--bogus"], "unrecognized arguments: --bogus"),
                                          (["--port"], "argument --port: expected one argument"),
                                          (["--share", "yes"], "unrecognized arguments: yes")])
def test_an_unknown_or_incomplete_flag_is_one_line(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message} \\(python app.py --help lists every flag\\)$"):
        parse_config(argv)


def run_app(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "app.py", *argv], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("argv,env,line", [
    ([], {"DRAFTGRID_SIM_GPUS": "two"},
     "app.py: error: bad --sim-gpus (env DRAFTGRID_SIM_GPUS): got DRAFTGRID_SIM_GPUS='two'; allowed: a whole number >= 1"),
    (["--port", "99999"], {},
     "app.py: error: bad --port (env DRAFTGRID_PORT): got --port '99999'; allowed: a whole number from 1 to 65535"),
    (["--bogus"], {}, "app.py: error: unrecognized arguments: --bogus (python app.py --help lists every flag)"),
])
def test_app_exits_with_status_2_and_one_line_without_a_traceback(argv: list[str], env: dict[str, str],
                                                                   line: str) -> None:
    done = run_app(argv, env)
    assert done.returncode == 2, done
    assert done.stderr == line + "\n" and done.stdout == ""  # one line, nothing else: no traceback
