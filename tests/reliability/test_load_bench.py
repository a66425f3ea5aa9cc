"""The load bench itself, in miniature: users in their own processes (one through Gradio's client),
the app's own timing read from `Server-Timing`, and the database invariants checked afterwards.
A few seconds, so a change that breaks the bench shows up in CI rather than on the next load run."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import bench_load


def test_a_short_load_run_holds_every_invariant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench_load.main(["--seconds", "4", "--users", "3", "--gradio-users", "1", "--think", "0",
                     "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "ALL INVARIANTS HOLD: True" in out, out
    assert "failures (5xx / dropped): 0" in out, out
    kinds = {line.split()[0] + (" (in app)" if "(in app)" in line else "") for line in out.splitlines()
             if line.startswith("  ") and line.split()[0] in {"select", "stats", "batch_poll", "generate"}}
    assert {"generate", "batch_poll", "select", "select (in app)", "batch_poll (in app)"} <= kinds, out
    assert (tmp_path / "app.duckdb").is_file()
