"""Soak: a longer, lower-rate mixed run with ComfyUI server kills and restarts injected
periodically; checks the load bench's invariants plus the app process's memory (RSS) and open
file descriptors over time.

Run: python -m bench soak   (or python -m bench.bench_soak --seconds 600 --kill-every 30)
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import tempfile
import threading
import time
from pathlib import Path

from bench.app_process import SimProcess, start_stack
from bench.load_users import Recorder, check_invariants, print_report, run_users

DOWNTIME = 3.0  # seconds a killed server stays down before it is restarted on the same port
IMAGE_BUDGET_MB = 40  # small on purpose: a soak makes ~120 MB of simulator images in 6 minutes


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_soak", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=600.0)
    p.add_argument("--users", type=int, default=6)
    p.add_argument("--gradio-users", type=int, default=2)
    p.add_argument("--think", type=float, default=1.0, help="mean seconds a user pauses between actions")
    p.add_argument("--kill-every", type=float, default=30.0, help="seconds between server kills")
    p.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS / fd samples")
    p.add_argument("--sim-speed", type=float, default=20.0)
    p.add_argument("--max-image-disk-mb", type=int, default=IMAGE_BUDGET_MB,
                   help="the app's image budget; small by default so the retention policy prunes during the soak")
    p.add_argument("--dir", type=Path, default=None)
    return p.parse_args(argv)


def process_usage(pid: int) -> tuple[float, int]:
    """(RSS in MiB, open file descriptors) of a live process, from /proc."""
    with open(f"/proc/{pid}/status") as status:
        rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def folder_bytes(data_dir: Path) -> int:
    """What the app's images and thumbnails use on disk."""
    return sum(p.stat().st_size for folder in ("images", "thumbs") for p in (data_dir / folder).rglob("*")
               if p.is_file())


def kill_servers(sims: list[SimProcess], every: float, stop: threading.Event, log: list[str]) -> None:
    """SIGKILL one random server every `every` seconds and bring it back after DOWNTIME."""
    rng = random.Random(7)
    while not stop.wait(every):
        sim = rng.choice(sims)
        sim.kill(signal.SIGKILL)
        log.append(f"{time.strftime('%H:%M:%S')} killed {sim.url}")
        stop.wait(DOWNTIME)
        sim.start()


def sample_usage(pid: int, every: float, stop: threading.Event, samples: list[tuple[float, float, int]]) -> None:
    start = time.monotonic()
    while True:
        samples.append((time.monotonic() - start, *process_usage(pid)))
        if stop.wait(every):
            return


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench_soak_"))
    stack = start_stack(work, users=args.users, sim_speed=args.sim_speed,
                        extra=("--comfy-timeout", "10", "--max-image-disk-mb", str(args.max_image_disk_mb)))
    app, sims = stack.app, stack.sims
    rec, stop, kills, samples = Recorder(), threading.Event(), [], []
    helpers = [threading.Thread(target=kill_servers, args=(sims, args.kill_every, stop, kills), daemon=True),
               threading.Thread(target=sample_usage, args=(app.pid, args.sample_every, stop, samples), daemon=True)]
    try:
        print(f"app {app.url} (pid {app.pid}), {args.users} users ({args.gradio_users} Gradio) for {args.seconds:g} s, "
              f"a server killed every {args.kill_every:g} s (down {DOWNTIME:g} s), sim speed {args.sim_speed:g}")
        for helper in helpers:
            helper.start()
        wall = run_users(app.url, stack.credentials, args.gradio_users, args.seconds, rec, think=args.think)
        stop.set()
        for helper in helpers:
            helper.join()
        samples.append((wall, *process_usage(app.pid)))
    finally:
        stop.set()
        stack.stop()
    inv = check_invariants(app.db, rec)
    print_report("soak", wall, rec, inv)
    print(f"  server kills: {len(kills)}")
    note = " (the soak's default: small on purpose, so pruning runs)" if args.max_image_disk_mb == IMAGE_BUDGET_MB else ""
    print(f"  images folder: {folder_bytes(work / 'data') / 1e6:.1f} MB with thumbnails, budget "
          f"{args.max_image_disk_mb} MB{note}; {inv.images_pruned} of {inv.images_done} done images pruned")
    warm = samples[min(len(samples) - 1, 2)]  # after the first samples: imports and caches are in
    print(f"  RSS MiB: start {samples[0][1]:.0f}, after warm-up {warm[1]:.0f}, end {samples[-1][1]:.0f}, "
          f"max {max(s[1] for s in samples):.0f}; growth after warm-up {samples[-1][1] - warm[1]:+.0f} MiB")
    print(f"  open fds: start {samples[0][2]}, after warm-up {warm[2]}, end {samples[-1][2]}, "
          f"max {max(s[2] for s in samples)}")
    print("  samples (s, RSS MiB, fds): " + ", ".join(f"({t:.0f}, {r:.0f}, {f})" for t, r, f in samples[::6]))


if __name__ == "__main__":
    main()
