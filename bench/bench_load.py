"""Load: 20 concurrent users (REST and Gradio's own client) on 2 simulated GPUs, with --auth.

Checks afterwards: no 5xx, every acknowledged selection stored, aggregates equal the rebuild,
every batch complete and attributed to its user; reports images/s, feedback events/s and
p50/p95/p99 latency per request kind. The app and each simulated GPU are separate processes,
as in a deployment, so the measuring clients do not share the app's GIL.

Layouts (`--layout`): `shared` lets the scheduler put every process on any CPU (the app competes
with the 20 users and the GPU processes for every core); `pinned` puts the app process (every one
of its threads: the affinity is set before it starts) alone on the first CPU and everything else
(the GPU processes, the user processes, this bench, a profiler) on the others; `both` alternates
the two, `--runs` times each, and prints them side by side.

Run: python -m bench load   (or python -m bench.bench_load --seconds 60 --users 20 --gradio-users 5)
     python -m bench.bench_load --think 1.5 --layout both --runs 3
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.app_process import cpu_list, start_stack, thread_affinity
from bench.load_users import Invariants, Recorder, check_invariants, print_report, run_users

QUICK_KINDS = ("select", "stats", "batch_poll")  # must stay fast while generation runs
TARGETS_MS = {"select": 100.0, "stats": 100.0, "batch_poll": 150.0}  # p95, as the client sees it
LAYOUTS = ("shared", "pinned")
PY_SPY_ARGS = "--idle --threads --rate 100 --format raw"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_load", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="how long users keep starting work")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--gradio-users", type=int, default=5, help="how many of the users drive the Gradio UI")
    p.add_argument("--sim-speed", type=float, default=50.0, help="simulated GPU speed-up (1 = realistic)")
    p.add_argument("--think", type=float, default=0.0,
                   help="mean seconds a user pauses between actions (0 = flat out, a stress test; "
                        "1-2 = people looking at their grid)")
    p.add_argument("--layout", choices=(*LAYOUTS, "both"), default="shared",
                   help="shared: no pinning; pinned: the app alone on the first CPU, everything else on the "
                        "others; both: alternate the two")
    p.add_argument("--runs", type=int, default=1, help="runs of each layout, one after the other")
    p.add_argument("--py-spy", type=Path, default=None, metavar="FILE",
                   help="record the app process with py-spy during each run (FILE gets the layout and run "
                        "number appended; latencies of a profiled run are not comparable)")
    p.add_argument("--py-spy-args", default=PY_SPY_ARGS, help=f"py-spy record options (default {PY_SPY_ARGS!r})")
    p.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    return p.parse_args(argv)


@dataclass
class RunResult:
    layout: str
    run: int
    wall: float
    rec: Recorder
    inv: Invariants


def cpu_plan(layout: str) -> tuple[frozenset[int] | None, frozenset[int] | None]:
    """(the app's CPUs, everything else's CPUs) for a layout; (None, None) = not pinned."""
    if layout == "shared":
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        raise SystemExit(f"the pinned layout needs at least 2 CPUs; this process may use {cpu_list(allowed)}")
    return frozenset(allowed[:1]), frozenset(allowed[1:])


@contextmanager
def on_cpus(cpus: frozenset[int] | None) -> Iterator[None]:
    """Pin the calling thread (and so every process and thread it starts meanwhile) to `cpus`."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def process_cpu(pid: int) -> float:
    """CPU seconds a live process has used (all its threads, exited ones included)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def reaped_children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


@dataclass
class CpuUse:
    """The app's CPU time (exited threads included), its live threads' time runnable but waiting
    for a CPU (schedstat; a thread waiting for the GIL sleeps, so this is CPU contention), and each
    CPU's busy and total ticks (/proc/stat: what every process on the machine used, others' too)."""

    app_cpu: float
    app_waiting: dict[int, float]  # tid: seconds runnable without a CPU
    cpus: dict[str, tuple[int, int]]  # "cpu0": (busy ticks, all ticks)

    @classmethod
    def read(cls, pid: int) -> CpuUse:
        app_cpu = process_cpu(pid)
        waiting = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    waiting[int(tid)] = int(f.read().split()[1]) / 1e9
            except (OSError, ValueError, IndexError):  # the thread ended meanwhile
                pass
        cpus = {}
        with open("/proc/stat") as f:
            for line in f:
                name, *ticks = line.split()
                if name.startswith("cpu") and name != "cpu":
                    t = [int(x) for x in ticks[:8]]
                    cpus[name] = (sum(t) - t[3] - t[4], sum(t))  # all but idle and iowait
        return cls(app_cpu, waiting, cpus)

    def since(self, start: CpuUse, wall: float, app_cpus: frozenset[int] | None) -> str:
        waited = sum(w - start.app_waiting.get(tid, 0.0) for tid, w in self.app_waiting.items())
        busy = {name: (b - start.cpus[name][0]) / max(1, t - start.cpus[name][1])
                for name, (b, t) in self.cpus.items() if name in start.cpus}
        used = self.app_cpu - start.app_cpu
        alone = f"cpu{min(app_cpus)}" if app_cpus and len(app_cpus) == 1 else None
        others = (f"; on {alone}, nothing of the bench's but the app: {max(0.0, busy[alone] - used / wall):.0%} of it "
                  "went to other work on the machine") if alone in busy else ""
        return (f"app {used:.1f} s CPU in {wall:.1f} s ({used / wall:.2f} of a core), "
                f"its live threads runnable but waiting for a CPU {waited:.1f} s in all; machine busy: "
                + ", ".join(f"{name} {b:.0%}" for name, b in busy.items()) + others)


def _affinities(pids: list[int]) -> str:
    counts = Counter(thread_affinity(pid) for pid in pids)
    return "; ".join(f"{n}× {what}" for what, n in counts.most_common())


def run_once(args: argparse.Namespace, layout: str, run: int, work: Path) -> RunResult:
    app_cpus, rest = cpu_plan(layout)
    rec, spy, cpu0 = Recorder(), None, None
    rest0: dict[str, float] = {}
    work.mkdir(parents=True, exist_ok=True)
    print(f"\n=== layout {layout}, run {run}: " + (
        f"app on cpu {cpu_list(app_cpus)}, GPUs + users + bench on cpu {cpu_list(rest)}" if app_cpus and rest
        else f"nothing pinned (all processes on cpu {cpu_list(os.sched_getaffinity(0))})")
        + "; load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()), flush=True)
    with on_cpus(rest):
        stack = start_stack(work, users=args.users, sim_speed=args.sim_speed, app_cpus=app_cpus, sim_cpus=rest)
        app = stack.app

        def started(user_pids: list[int]) -> None:
            nonlocal spy, cpu0
            cpu0 = CpuUse.read(app.pid)
            # the users' CPU counts from here (not their imports) and is read once they are reaped
            rest0.update(gpus=sum(process_cpu(sim.pid) for sim in stack.sims),
                         users=reaped_children_cpu() + sum(process_cpu(pid) for pid in user_pids))
            print(f"  affinity: app pid {app.pid}: {thread_affinity(app.pid)}", flush=True)
            for sim in stack.sims:
                print(f"  affinity: GPU {sim.url} pid {sim.pid}: {thread_affinity(sim.pid)}")
            print(f"  affinity: bench pid {os.getpid()}: {thread_affinity(os.getpid())}")
            print(f"  affinity: {len(user_pids)} user processes: {_affinities(user_pids)}", flush=True)
            if args.py_spy is not None:
                spy = start_py_spy(args, app.pid, f"{args.py_spy}.{layout}.{run}")

        try:
            print(f"  app {app.url} (pid {app.pid}), GPUs {[s.url for s in stack.sims]}, {args.users} users "
                  f"({args.gradio_users} via gradio_client) for {args.seconds:g} s at sim speed {args.sim_speed:g}, "
                  f"think {args.think:g} s", flush=True)
            wall = run_users(app.url, stack.credentials, args.gradio_users, args.seconds, rec, think=args.think,
                             on_start=started)
            print(f"  affinity after the run: app pid {app.pid}: {thread_affinity(app.pid)}")
            if cpu0 is not None:
                print(f"  CPU during the run: {CpuUse.read(app.pid).since(cpu0, wall, app_cpus)}")
                gpus = sum(process_cpu(sim.pid) for sim in stack.sims) - rest0["gpus"]
                users = reaped_children_cpu() - rest0["users"]
                print(f"  CPU of the rest: GPU processes {gpus:.1f} s ({gpus / wall:.2f} of a core), "
                      f"user processes {users:.1f} s ({users / wall:.2f} of a core)")
        finally:
            stop_py_spy(spy)
            stack.stop()
    app.print_errors(rec.failures)
    inv = check_invariants(app.db, rec)
    print_report(f"load [{layout}, run {run}]", wall, rec, inv)
    print_targets(rec)
    return RunResult(layout, run, wall, rec, inv)


def start_py_spy(args: argparse.Namespace, pid: int, out: str) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy")
    if exe is None:
        print("  py-spy not found (pip install py-spy): no profile")
        return None
    argv = [exe, "record", "--pid", str(pid), "--duration", str(int(args.seconds)), "--output", out,
            *shlex.split(args.py_spy_args)]
    print(f"  profiling: {shlex.join(argv)}", flush=True)
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_py_spy(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is None:
        return
    try:
        _, err = spy.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
        _, err = spy.communicate()
    if spy.returncode:
        print(f"  py-spy exited {spy.returncode}: {err.decode(errors='replace')[-500:]}")


def print_targets(rec: Recorder) -> None:
    p = rec.percentiles()
    parts = []
    for kind, target in TARGETS_MS.items():
        if kind in p:
            app = p.get(f"{kind} (in app)")
            verdict = "ok" if p[kind]["p95"] < target else "OVER"
            parts.append(f"{kind} {p[kind]['p95']:.1f}" + (f" (in app {app['p95']:.1f})" if app else "")
                         + f" < {target:g}: {verdict}")
    print(f"  p95 targets: {'; '.join(parts)}")
    slow = {k: round(v["p95"], 1) for k, v in p.items() if k in QUICK_KINDS and v["p95"] > 100}
    print(f"  quick requests with p95 > 100 ms: {slow or 'none'}")


def print_summary(results: list[RunResult]) -> None:
    """One row per run: the figures docs/RELIABILITY.md quotes."""
    def p95(r: RunResult, kind: str) -> str:
        p = r.rec.percentiles()
        if kind not in p:
            return "-"
        app = p.get(f"{kind} (in app)")
        return f"{p[kind]['p95']:.1f}" + (f" ({app['p95']:.1f})" if app else "")

    print("\nsummary (p95 ms as the client saw it, in app in brackets)")
    print(f"  {'layout':7} {'run':>3} {'images/s':>8} {'fb/s':>5} {'select p95':>16} {'stats p95':>16} "
          f"{'poll p95':>16} {'5xx/drop':>8} {'lost':>4} {'missing':>7} {'invariants':>10}")
    for r in results:
        print(f"  {r.layout:7} {r.run:3d} {r.inv.images_done / r.wall:8.2f} {r.inv.feedback_rows / r.wall:5.2f} "
              f"{p95(r, 'select'):>16} {p95(r, 'stats'):>16} {p95(r, 'batch_poll'):>16} {len(r.rec.failures):8d} "
              f"{r.inv.images_lost:4d} {r.inv.selections_missing:7d} {str(r.inv.ok and not r.rec.failures):>10}")
    met = [r for r in results if all(
        k in r.rec.percentiles() and r.rec.percentiles()[k]["p95"] < t for k, t in TARGETS_MS.items())]
    print(f"  runs meeting every p95 target ({', '.join(f'{k} < {t:g}' for k, t in TARGETS_MS.items())}): "
          f"{len(met)} of {len(results)}")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench_load_"))
    layouts = LAYOUTS if args.layout == "both" else (args.layout,)
    plan = [(layout, run) for run in range(1, args.runs + 1) for layout in layouts]
    results = []
    for layout, run in plan:
        results.append(run_once(args, layout, run, work if len(plan) == 1 else work / f"{layout}-{run}"))
    print_summary(results)


if __name__ == "__main__":
    main()
