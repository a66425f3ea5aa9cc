"""`python app.py ...` as a real child process: what load, soak and kill tests drive from outside.

A separate process keeps the measuring clients off the app's GIL, and lets a test SIGKILL it.
Each child can be pinned to a set of CPUs (`cpus=`), set before it runs any code, so every thread
it starts inherits the set.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST_PICKED_PORT = 10000
_ports = random.SystemRandom()  # not the test run's seeded `random`: every test would draw the same port


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server started a moment later, below the kernel's
    ephemeral range. A port from `bind(0)` is one the kernel may hand out again before it is used
    — to a simulated GPU started meanwhile, or as the local end of an outgoing connection — and
    then the app could not listen on it (Gradio's "Cannot find empty port", seen in a CI run)."""
    try:
        below = int(EPHEMERAL_PORTS.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        below = 32768  # Linux's default start; elsewhere (macOS: 49152) this is below it too
    for _ in range(200):
        port = _ports.randrange(LOWEST_PICKED_PORT, below)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free TCP port between {LOWEST_PICKED_PORT} and {below} on 127.0.0.1")


def _child_setup(cpus: frozenset[int] | None) -> Callable[[], None]:
    """What a child runs between fork and exec: SIGINT back to its default (a bench started in the
    background of a non-interactive shell ignores SIGINT, the child would inherit that and never stop
    cleanly), then its CPUs, if given."""

    def setup() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


def cpu_list(cpus: Iterable[int]) -> str:
    return ",".join(map(str, sorted(cpus)))


def thread_affinity(pid: int) -> str:
    """The CPUs each thread of a live process may run on, e.g. "cpu 0 (all 57 threads)"."""
    counts: Counter[str] = Counter()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                counts[cpu_list(os.sched_getaffinity(int(tid)))] += 1
            except OSError:  # the thread ended meanwhile
                pass
    except OSError:
        return "(not running)"
    if len(counts) == 1:
        (cpus, n), = counts.items()
        return f"cpu {cpus} (all {_threads(n)})"
    return "; ".join(f"cpu {cpus}: {_threads(n)}" for cpus, n in sorted(counts.items()))


def _threads(n: int) -> str:
    return f"{n} thread" + ("s" if n != 1 else "")


def _signal_and_reap(proc: subprocess.Popen[str] | None, sig: int) -> None:
    """Send `sig` to a still-running child and wait for it to end."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(30)


@dataclass
class AppProcess:
    """One app process on `db`; `start()` returns once it serves (or has exited)."""

    db: Path
    port: int = field(default_factory=free_port)
    sim_speed: float = 0.0
    extra: tuple[str, ...] = ()
    cpus: frozenset[int] | None = None  # None: wherever the scheduler puts it
    proc: subprocess.Popen[str] | None = None
    url: str = ""
    _stderr: list[str] = field(default_factory=list)

    def argv(self) -> list[str]:
        return [sys.executable, "app.py", "--db", str(self.db), "--port", str(self.port),
                "--sim-speed", str(self.sim_speed), "--no-sim-previews", *self.extra]

    def start(self, timeout: float = 60.0, may_exit: bool = False) -> AppProcess:
        """Start and wait for the "running at" line. A process that exits first is an error with
        its stderr, unless `may_exit` (a start that is meant to be refused)."""
        self.proc = subprocess.Popen(self.argv(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                                     preexec_fn=_child_setup(self.cpus))
        ready = threading.Event()
        drain = threading.Thread(target=self._drain_stderr, daemon=True)
        drain.start()
        threading.Thread(target=self._watch_stdout, args=(ready,), daemon=True).start()
        if not ready.wait(timeout):
            self.kill()
            raise RuntimeError(f"app did not start within {timeout}s: {self.stderr()[-2000:]}")
        if not self.url and not may_exit:
            code = self.proc.wait(10)
            drain.join(10)  # the whole of stderr, to the last line
            raise RuntimeError(f"app exited with status {code} before serving: {self.stderr()[-3000:]}")
        return self

    def _watch_stdout(self, ready: threading.Event) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            if "DraftGrid is running at" in line:
                self.url = line.split("running at", 1)[1].split()[0].rstrip("/")
                ready.set()
        ready.set()  # stdout closed: the process ended

    def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stderr(self) -> str:
        return "".join(self._stderr)

    def print_errors(self, failures: list[str], limit: int = 120) -> None:
        """When users saw failures (5xx, dropped connections), the app's first error: its ERROR line
        or traceback whole (to the exception's own line; the framework's frames in the middle cut
        past `limit` lines) and a few lines after, so the cause is in the bench's own output."""
        if not failures:
            return
        lines = self._stderr
        first = next((n for n, line in enumerate(lines) if " ERROR " in line or line.startswith("Traceback")), None)
        if first is None:
            print("  the app's log has no ERROR line and no traceback")
            return
        end = next((n for n in range(first + 1, len(lines)) if not lines[n].startswith(
            (" ", "Traceback", "During handling", "The above exception", "\n"))), len(lines) - 1)
        shown = lines[first:end + 1]
        if len(shown) > limit:
            shown = shown[:limit // 4] + ["    ...\n"] + shown[-(limit - limit // 4):]
        print("  the app's log from its first error:\n" + "".join(shown + lines[end + 1:end + 6]))

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` (SIGKILL: no cleanup at all; SIGINT: a clean stop) and reap the process."""
        _signal_and_reap(self.proc, sig)


@dataclass
class SimProcess:
    """One simulated GPU as its own process (`python -m comfy.simulator`), killable and restartable
    on the same port, the way a ComfyUI box crashes and comes back."""

    speed: float
    output_dir: Path
    port: int = field(default_factory=free_port)
    cpus: frozenset[int] | None = None
    proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> SimProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "comfy.simulator", "--port", str(self.port), "--speed", str(self.speed),
             "--output-dir", str(self.output_dir)],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, preexec_fn=_child_setup(self.cpus))
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the URL, once it listens
        if not line.startswith("http"):
            raise RuntimeError(f"simulator on port {self.port} did not start")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self, sig: int = signal.SIGKILL) -> None:
        _signal_and_reap(self.proc, sig)


@dataclass
class Stack:
    """The app under --auth with `len(credentials)` users, driving simulated GPU processes."""

    app: AppProcess
    sims: list[SimProcess]
    credentials: list[tuple[str, str]]

    def stop(self) -> None:
        """A clean app stop (SIGINT closes the store), then the GPUs (even if the app did not stop)."""
        try:
            self.app.kill(signal.SIGINT)
        finally:
            for sim in self.sims:
                sim.kill()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def start_stack(work: Path, *, users: int, sim_speed: float, gpus: int = 2, extra: tuple[str, ...] = (),
                app_cpus: frozenset[int] | None = None, sim_cpus: frozenset[int] | None = None) -> Stack:
    """GPU processes first, then the app on them, each user with its own login; `app_cpus` /
    `sim_cpus` pin the app / the GPU processes (None: not pinned). From here a SIGTERM ends the
    bench as Ctrl-C would, through its `finally` (stopping the stack) and the exit that ends the
    daemon user processes: by default it killed the bench alone and left them all running."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sims = [SimProcess(sim_speed, work / f"sim{n}", cpus=sim_cpus).start() for n in range(gpus)]
    credentials = [(f"user{n:02d}", f"pass{n:02d}") for n in range(users)]
    auth = [a for user, password in credentials for a in ("--auth", f"{user}:{password}")]
    comfy = [a for sim in sims for a in ("--comfy", sim.url)]
    app = AppProcess(work / "app.duckdb", extra=(*comfy, *auth, "--data-dir", str(work / "data"), *extra),
                     cpus=app_cpus).start()
    if not app.url:  # it exited before serving: no users against an empty URL
        for sim in sims:
            sim.kill()
        code = app.proc.poll() if app.proc else None
        raise RuntimeError(f"the app exited before serving (code {code}): {app.stderr()[-2000:]}")
    return Stack(app, sims, credentials)
