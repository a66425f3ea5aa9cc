"""The CLI serves and prints its URLs; SimulatorThread runs several GPUs for sync code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from comfy.simulator import SimulatorThread, TimeModel

ROOT = Path(__file__).resolve().parents[2]


def test_cli_prints_urls_and_serves(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "comfy.simulator", "--port", "0", "--gpus", "2",
                                "--speed", "0", "--output-dir", str(tmp_path)],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        urls = [process.stdout.readline().strip() for _ in range(2)]
        devices = [httpx.get(url + "/system_stats", timeout=10).json()["devices"][0]["name"] for url in urls]
        assert devices == ["cuda:0 Simulated GPU 0 (DraftGrid simulator)", "cuda:1 Simulated GPU 1 (DraftGrid simulator)"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_simulator_thread_serves_sync_callers(tmp_path: Path) -> None:
    simulators = SimulatorThread(2, time_model=TimeModel(scale=0))
    urls = simulators.start()
    try:
        assert len(set(urls)) == 2
        assert httpx.get(urls[1] + "/queue").json() == {"queue_running": [], "queue_pending": []}
        simulators.servers[0].faults.refuse_connections = True
        simulators.call(simulators.servers[0].restart())
        assert httpx.get(urls[0] + "/prompt").status_code == 200
        assert [s.name for s in simulators.servers] == ["sim-gpu-0", "sim-gpu-1"]
    finally:
        simulators.stop()
