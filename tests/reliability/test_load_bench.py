"""The load bench itself, in miniature: users in their own processes (one through Gradio's client),
the app's own timing read from `Server-Timing`, and the database invariants checked afterwards.
A few seconds, so a change that breaks the bench shows up in CI rather than on the next load run;
the pinned layout (the app alone on one CPU) in an even smaller run."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from bench import bench_load
from bench.app_process import cpu_list


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


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the pinned layout needs two CPUs")
def test_the_pinned_layout_puts_the_app_alone_on_one_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = os.sched_getaffinity(0)
    app_cpu, rest = cpu_list(sorted(before)[:1]), cpu_list(sorted(before)[1:])
    bench_load.main(["--seconds", "2", "--users", "2", "--gradio-users", "0", "--think", "0", "--layout", "pinned",
                     "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert f"=== layout pinned, run 1: app on cpu {app_cpu}, GPUs + users + bench on cpu {rest}" in out, out
    # every thread of the app, including those it started under load, and nothing else on its CPU
    assert re.search(rf"affinity: app pid \d+: cpu {app_cpu} \(all \d+ threads?\)", out), out
    assert re.search(rf"affinity after the run: app pid \d+: cpu {app_cpu} \(all \d+ threads?\)", out), out
    assert len(re.findall(rf"affinity: GPU \S+ pid \d+: cpu {rest} \(all", out)) == 2, out
    assert f"affinity: 2 user processes: 2× cpu {rest} (all" in out, out
    assert "ALL INVARIANTS HOLD: True" in out, out
    assert os.sched_getaffinity(0) == before  # the bench gave the calling thread its CPUs back
