"""Load: 20 concurrent users (REST and Gradio's own client) on 2 simulated GPUs, with --auth.

Checks afterwards: no 5xx, every acknowledged selection stored, aggregates equal the rebuild,
every batch complete and attributed to its user; reports images/s, feedback events/s and
p50/p95/p99 latency per request kind. The app and each simulated GPU are separate processes,
as in a deployment, so the measuring clients do not share the app's GIL.

Run: python -m bench load   (or python -m bench.bench_load --seconds 60 --users 20 --gradio-users 5)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.app_process import start_stack
from bench.load_users import Recorder, check_invariants, print_report, run_users

QUICK_KINDS = ("select", "stats", "batch_poll")  # must stay under 100 ms p95 while generation runs


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_load", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="how long users keep starting work")
    p.add_argument("--users", type=int, default=20)
    p.add_argument("--gradio-users", type=int, default=5, help="how many of the users drive the Gradio UI")
    p.add_argument("--sim-speed", type=float, default=50.0, help="simulated GPU speed-up (1 = realistic)")
    p.add_argument("--think", type=float, default=0.0,
                   help="mean seconds a user pauses between actions (0 = flat out, a stress test; "
                        "1-2 = people looking at their grid)")
    p.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench_load_"))
    stack = start_stack(work, users=args.users, sim_speed=args.sim_speed)
    app, rec = stack.app, Recorder()
    try:
        print(f"app {app.url} (pid {app.pid}), GPUs {[s.url for s in stack.sims]}, {args.users} users "
              f"({args.gradio_users} via gradio_client) for {args.seconds:g} s at sim speed {args.sim_speed:g}, "
              f"think {args.think:g} s")
        wall = run_users(app.url, stack.credentials, args.gradio_users, args.seconds, rec, think=args.think)
    finally:
        stack.stop()
    inv = check_invariants(app.db, rec)
    print_report("load", wall, rec, inv)
    slow = {k: round(v["p95"], 1) for k, v in rec.percentiles().items() if k in QUICK_KINDS and v["p95"] > 100}
    print(f"  quick requests with p95 > 100 ms: {slow or 'none'}")


if __name__ == "__main__":
    main()
