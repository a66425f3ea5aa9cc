"""Flags and their environment twins, including what a Hugging Face Space sets."""

from __future__ import annotations

from pathlib import Path

import pytest

from draftgrid.config import parse_config


def test_defaults_start_the_simulator_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("COMFYUI_URLS", "SPACE_ID", "GRADIO_SERVER_NAME", "DRAFTGRID_HOST", "DRAFTGRID_DB", "PORT",
                 "DRAFTGRID_PORT", "GRADIO_SERVER_PORT", "DRAFTGRID_AUTH"):
        monkeypatch.delenv(name, raising=False)
    config = parse_config([])
    assert config.simulated and config.host == "127.0.0.1" and config.port == 7860
    assert config.db_path == Path("data/draftgrid.duckdb") and config.auth == ()


def test_flags_and_env_twins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMFYUI_URLS", "http://a:8188, http://b:8188/")
    monkeypatch.setenv("DRAFTGRID_AUTH", "ann:pw1,bob:pw2")
    monkeypatch.setenv("SPACE_ID", "someone/draftgrid")
    config = parse_config(["--db", "/data/x.duckdb"])
    assert config.comfy_urls == ("http://a:8188", "http://b:8188") and not config.simulated
    assert config.auth == (("ann", "pw1"), ("bob", "pw2")) and config.host == "0.0.0.0"
    assert config.db_path == Path("/data/x.duckdb") and config.data_dir == Path("/data")
    assert parse_config(["--comfy", "http://c:8188"]).comfy_urls == ("http://c:8188",)


def test_bad_auth_is_refused() -> None:
    with pytest.raises(SystemExit, match="user:password"):
        parse_config(["--auth", "nopassword"])
