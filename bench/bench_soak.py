"""Soak: a longer, lower-rate mixed run with ComfyUI server kills and restarts injected
periodically; checks the load bench's invariants plus the app process's memory (RSS) and open
file descriptors over time.

After a warm-up (`--warmup`, 300 s: imports done, caches filled to their capacity) a measured
window runs, either for `--seconds` or, with `--images N`, until N more images have finished; the
bench prints the app's RSS growth per finished image over that window, with PASS/FAIL against
1 KB/image. The window starts and ends with no batch in flight (the users of one round have
finished before it starts, the last round's before it ends), so both ends are taken in the same
state; the slope of RSS against images finished over the window's samples is printed too.

Run: python -m bench soak   (or python -m bench.bench_soak --sim-speed 0 --warmup 300 --images 20000)
"""

from __future__ import annotations

import argparse
import math
import os
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from bench.app_process import SimProcess, start_stack
from bench.load_users import Recorder, check_invariants, print_report, run_users

DOWNTIME = 3.0  # seconds a killed server stays down before it is restarted on the same port
IMAGE_BUDGET_MB = 40  # small on purpose: a soak makes ~120 MB of simulator images in 6 minutes
GROWTH_LIMIT = 1024  # bytes of RSS per finished image over the measured window
MIN_ROUND = 60.0  # seconds: the shortest round of users when running until --images


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_soak", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=300.0,
                   help="length of the measured window after the warm-up (unless --images)")
    p.add_argument("--warmup", type=float, default=300.0,
                   help="seconds of load before the measured window (imports, caches filling to capacity)")
    p.add_argument("--images", type=int, default=0,
                   help="run the measured window until this many more images have finished (rounds of users)")
    p.add_argument("--max-seconds", type=float, default=3600.0,
                   help="with --images: give up (FAIL) when the window has run this long")
    p.add_argument("--users", type=int, default=6)
    p.add_argument("--gradio-users", type=int, default=2)
    p.add_argument("--think", type=float, default=1.0, help="mean seconds a user pauses between actions")
    p.add_argument("--kill-every", type=float, default=30.0, help="seconds between server kills")
    p.add_argument("--sample-every", type=float, default=5.0, help="seconds between RSS / fd samples")
    p.add_argument("--sim-speed", type=float, default=20.0)
    p.add_argument("--max-image-disk-mb", type=int, default=IMAGE_BUDGET_MB,
                   help="the app's image budget (0: none); small by default so the retention policy prunes during the soak")
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


def images_finished(url: str, auth: tuple[str, str]) -> int | None:
    """Images the app's pool has finished so far, over every server (`GET /api/gpus`); None when
    the app did not answer."""
    try:
        response = httpx.get(f"{url}/api/gpus", auth=auth, timeout=30)
        response.raise_for_status()
        return sum(int(gpu["images_done"]) for gpu in response.json())
    except (httpx.HTTPError, KeyError, TypeError, ValueError):
        return None


def disk_use(data_dir: Path, budget_mb: int | None) -> str:
    """The app's images folder (with thumbnails) against its budget, e.g. for a line of the report.
    `budget_mb` None: the app was given none (the hook the retention policy's figures print through)."""
    used = folder_bytes(data_dir) / 1e6
    return f"{used:.1f} MB" + (f" of a {budget_mb} MB budget" if budget_mb is not None else " (no budget set)")


@dataclass
class Sample:
    t: float  # seconds since the stack started
    rss_mib: float
    fds: int
    images: int | None  # finished so far (pool count)


@dataclass
class Window:
    """The measured stretch: from the end of the warm-up to the end of the last round."""

    start: Sample
    end: Sample
    rounds: int
    samples: list[Sample]  # taken during the window (both ends included)

    @property
    def images(self) -> int:
        return (self.end.images or 0) - (self.start.images or 0)

    @property
    def seconds(self) -> float:
        return self.end.t - self.start.t

    def growth_per_image(self) -> float:
        """Bytes of RSS per image finished, end minus start (both with nothing in flight)."""
        return (self.end.rss_mib - self.start.rss_mib) * 2**20 / max(self.images, 1)

    def slope_per_image(self) -> float:
        """Least-squares slope of RSS (bytes) against images finished over the window's samples."""
        points = [(s.images, s.rss_mib * 2**20) for s in self.samples if s.images is not None]
        if len(points) < 3 or len({x for x, _ in points}) < 2:
            return math.nan
        x, y = np.array(points, dtype=float).T
        return float(np.polyfit(x, y, 1)[0])


def kill_servers(sims: list[SimProcess], every: float, stop: threading.Event, log: list[str]) -> None:
    """SIGKILL one random server every `every` seconds and bring it back after DOWNTIME."""
    rng = random.Random(7)
    while not stop.wait(every):
        sim = rng.choice(sims)
        sim.kill(signal.SIGKILL)
        log.append(f"{time.strftime('%H:%M:%S')} killed {sim.url}")
        stop.wait(DOWNTIME)
        sim.start()


def sample(pid: int, url: str, auth: tuple[str, str], start: float) -> Sample:
    images = images_finished(url, auth)
    return Sample(time.monotonic() - start, *process_usage(pid), images)


def sample_usage(pid: int, url: str, auth: tuple[str, str], start: float, every: float, stop: threading.Event,
                 samples: list[Sample]) -> None:
    while True:
        samples.append(sample(pid, url, auth, start))
        if stop.wait(every):
            return


def measured_window(args: argparse.Namespace, run_round: Callable[[float, int], float],
                    now: Callable[[], Sample], samples: list[Sample]) -> Window:
    """After the warm-up: one round of `--seconds`, or rounds until `--images` more images have
    finished (each sized from the rate so far, at least MIN_ROUND s), or `--max-seconds` passed."""
    def counted() -> Sample:  # a window's end needs the image count: ask again if the app was slow
        for _ in range(5):
            taken = now()
            if taken.images is not None:
                break
            time.sleep(2)
        return taken

    start = last = counted()
    samples.append(start)
    known = [s for s in samples if s.images is not None]
    # the first round is sized from the warm-up's rate, later ones from the window's own
    rate = (start.images - known[0].images) / (start.t - known[0].t) if start.images and known and \
        start.t > known[0].t else 0.0
    rounds = 0
    while True:
        seconds = args.seconds
        if args.images:
            done, elapsed = (last.images or 0) - (start.images or 0), last.t - start.t
            if done >= args.images or elapsed >= args.max_seconds:
                break
            rate = done / elapsed if done > 0 else rate
            if rate > 0:
                seconds = max(MIN_ROUND, (args.images - done) / rate * 1.05)
            seconds = min(seconds, args.max_seconds - elapsed)
        run_round(seconds, rounds + 1)
        rounds += 1
        last = counted()
        samples.append(last)
        if not args.images:
            break
    return Window(start, last, rounds, sorted((s for s in samples if start.t <= s.t <= last.t), key=lambda s: s.t))


def per_image(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:+,.0f} B"


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    work = args.dir or Path(tempfile.mkdtemp(prefix="bench_soak_"))
    budget = args.max_image_disk_mb if args.max_image_disk_mb > 0 else None
    extra = ("--comfy-timeout", "10") + (("--max-image-disk-mb", str(budget)) if budget is not None else ())
    begun = time.monotonic()
    stack = start_stack(work, users=args.users, sim_speed=args.sim_speed, extra=extra)
    app, sims = stack.app, stack.sims
    auth = stack.credentials[0]
    rec, stop, kills, samples = Recorder(), threading.Event(), [], []
    helpers = [threading.Thread(target=kill_servers, args=(sims, args.kill_every, stop, kills), daemon=True),
               threading.Thread(target=sample_usage, daemon=True,
                                args=(app.pid, app.url, auth, begun, args.sample_every, stop, samples))]

    def run_round(seconds: float, n: int) -> float:
        print(f"  round {n}: {seconds:.0f} s of users", flush=True)
        return run_users(app.url, stack.credentials, args.gradio_users, seconds, rec, think=args.think,
                         seed=1 + 100 * n)

    try:
        window_text = f"until {args.images} images have finished" if args.images else f"{args.seconds:g} s"
        print(f"app {app.url} (pid {app.pid}), {args.users} users ({args.gradio_users} Gradio): warm-up "
              f"{args.warmup:g} s, then measured {window_text}; a server killed every {args.kill_every:g} s "
              f"(down {DOWNTIME:g} s), sim speed {args.sim_speed:g}", flush=True)
        for helper in helpers:
            helper.start()
        users_start = time.monotonic()
        if args.warmup > 0:
            run_users(app.url, stack.credentials, args.gradio_users, args.warmup, rec, think=args.think)
        warm_disk = disk_use(work / "data", budget)
        window = measured_window(args, run_round, lambda: sample(app.pid, app.url, auth, begun), samples)
        stop.set()
        for helper in helpers:
            helper.join()
        wall = time.monotonic() - users_start
    finally:
        stop.set()
        stack.stop()
    app.print_errors(rec.failures)
    inv = check_invariants(app.db, rec)
    print_report("soak", wall, rec, inv)
    print(f"  server kills: {len(kills)}")
    note = " (the soak's default: small on purpose, so pruning runs)" if args.max_image_disk_mb == IMAGE_BUDGET_MB else ""
    print(f"  images folder (with thumbnails): after warm-up {warm_disk}, at the end "
          f"{disk_use(work / 'data', budget)}{note}; {inv.images_pruned} of {inv.images_done} done images pruned")
    samples.sort(key=lambda s: s.t)
    first = samples[0]
    print(f"  RSS MiB: start {first.rss_mib:.0f}, after warm-up {window.start.rss_mib:.0f}, "
          f"end {window.end.rss_mib:.0f}, max {max(s.rss_mib for s in samples):.0f}")
    print(f"  open fds: start {first.fds}, after warm-up {window.start.fds}, end {window.end.fds}, "
          f"max {max(s.fds for s in samples)}")
    step = max(1, len(samples) // 24)
    print("  samples (s, RSS MiB, fds, images finished): " + ", ".join(
        f"({s.t:.0f}, {s.rss_mib:.0f}, {s.fds}, {s.images if s.images is not None else '?'})" for s in samples[::step]))
    growth, slope = window.growth_per_image(), window.slope_per_image()
    enough = window.images >= args.images
    ok = enough and growth < GROWTH_LIMIT and not slope >= GROWTH_LIMIT
    print(f"  measured window: {window.images} images finished in {window.seconds:.0f} s ({window.rounds} round(s) "
          f"of users, t = {window.start.t:.0f} → {window.end.t:.0f} s after a {args.warmup:g} s warm-up; "
          f"pool count, the store counted {inv.images_done} done over the whole run)")
    print(f"  RSS growth over the window: {window.start.rss_mib:.1f} → {window.end.rss_mib:.1f} MiB "
          f"({(window.end.rss_mib - window.start.rss_mib):+.1f} MiB) = {per_image(growth)} per finished image; "
          f"slope over {len(window.samples)} samples {per_image(slope)} per image")
    why = [] if enough else [f"only {window.images} of {args.images} images"]
    why += [f"growth {per_image(growth)}/image"] if growth >= GROWTH_LIMIT else []
    why += [f"slope {per_image(slope)}/image"] if slope >= GROWTH_LIMIT else []
    print(f"  RSS GROWTH {'PASS' if ok else 'FAIL'}: < {GROWTH_LIMIT} B (1 KB) per finished image"
          + (f" ({'; '.join(why)})" if why else ""))


if __name__ == "__main__":
    main()
