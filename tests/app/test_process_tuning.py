"""The server process's settings (GIL switch interval, allocator), applied in a child process so
the test run's own interpreter keeps its defaults."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from draftgrid.process_tuning import GIL_SWITCH_SECONDS, MALLOC_ARENAS

CHILD = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s")
from draftgrid.process_tuning import tune_for_serving
tune_for_serving()
print(sys.getswitchinterval())
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator settings are glibc's mallopt")
def test_serving_settings_take_effect() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True)
    assert float(done.stdout.strip()) == GIL_SWITCH_SECONDS
    assert f"{MALLOC_ARENAS} arenas (set)" in done.stderr and "mmapped (set)" in done.stderr, done.stderr
