"""Application configuration: CLI flags with environment-variable twins.

The ComfyUI server list is configuration only — nothing a browser user can change.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AppConfig:
    """Everything `app.py` needs to build and launch DraftGrid."""

    comfy_urls: tuple[str, ...] = ()
    db_path: Path = Path("data/draftgrid.duckdb")
    data_dir: Path = Path("data")
    pools_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: tuple[tuple[str, str], ...] = ()
    sim_gpus: int = 2
    sim_speed: float = 1.0
    sim_inventory: Path | None = None
    sim_previews: bool = True
    policy: str = "adaptive"
    half_life: float = 100.0  # reviews; tuned with bench/bench_policies.py (docs/BENCHMARKS.md)
    max_batch: int = 4  # images per ComfyUI prompt; the pool schedules these chunks
    comfy_timeout: float = 30.0  # seconds without an answer or event before a server counts as hung
    health_interval: float = 5.0  # seconds between health checks (a dead server rejoins on the next)

    @property
    def simulated(self) -> bool:
        """No ComfyUI URL given: the built-in simulator serves instead of real GPUs."""
        return not self.comfy_urls


def _split_urls(value: str | None) -> list[str]:
    return [u.strip() for u in (value or "").split(",") if u.strip()]


def _parse_auth(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    out = []
    for pair in pairs:
        user, sep, password = pair.partition(":")
        if not sep or not user or not password:
            raise SystemExit(f"--auth expects user:password, got {pair!r}")
        out.append((user, password))
    return tuple(out)


def build_parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="app.py",
        description="DraftGrid: a grid of fast Stable Diffusion drafts that learns your taste.",
    )
    p.add_argument("--comfy", action="append", default=None, metavar="URL",
                   help="ComfyUI server URL (repeat for several GPUs; env COMFYUI_URLS, comma-separated). "
                        "None given: start the built-in simulator.")
    p.add_argument("--db", default=env("DRAFTGRID_DB", "data/draftgrid.duckdb"),
                   help="DuckDB file (env DRAFTGRID_DB); on hosted platforms point it at persistent storage")
    p.add_argument("--data-dir", default=env("DRAFTGRID_DATA", None),
                   help="folder for generated images (env DRAFTGRID_DATA; default: beside the database)")
    p.add_argument("--pools", default=env("DRAFTGRID_POOLS"), help="checkpoint pools TOML (env DRAFTGRID_POOLS)")
    # on a Hugging Face Space (SPACE_ID set) the app must listen on every interface
    default_host = env("GRADIO_SERVER_NAME") or ("0.0.0.0" if env("SPACE_ID") else "127.0.0.1")
    p.add_argument("--host", default=env("DRAFTGRID_HOST", default_host),
                   help="bind address (env DRAFTGRID_HOST; 0.0.0.0 on a Hugging Face Space)")
    p.add_argument("--port", type=int,
                   default=int(env("DRAFTGRID_PORT") or env("GRADIO_SERVER_PORT") or env("PORT") or "7860"),
                   help="port (env DRAFTGRID_PORT)")
    p.add_argument("--share", action="store_true", default=env("DRAFTGRID_SHARE") == "1",
                   help="create a public Gradio share link (env DRAFTGRID_SHARE=1)")
    p.add_argument("--auth", action="append", default=None, metavar="USER:PASS",
                   help="require a login (repeatable; env DRAFTGRID_AUTH, comma-separated); protects UI and REST API")
    p.add_argument("--sim-gpus", type=int, default=int(env("DRAFTGRID_SIM_GPUS", "2")),
                   help="simulated GPUs when no --comfy is given")
    p.add_argument("--sim-speed", type=float, default=float(env("DRAFTGRID_SIM_SPEED", "1.0")),
                   help="simulator speed-up: 1 = the realistic GPU time model, 10 = ten times faster, 0 = instant")
    p.add_argument("--sim-inventory", default=env("DRAFTGRID_SIM_INVENTORY"),
                   help="simulator inventory JSON (checkpoints, LoRAs and their metadata)")
    p.add_argument("--no-sim-previews", action="store_true", help="simulator sends no live preview frames")
    p.add_argument("--policy", default=env("DRAFTGRID_POLICY", "adaptive"), choices=("adaptive", "seed", "uniform"),
                   help="checkpoint recommendation policy")
    p.add_argument("--comfy-timeout", type=float, default=float(env("DRAFTGRID_COMFY_TIMEOUT", "30")),
                   help="seconds without an answer or progress event before a ComfyUI server counts as hung")
    p.add_argument("--half-life", type=float, default=float(env("DRAFTGRID_HALF_LIFE", "100")),
                   help="preference half-life, in reviewed batches")
    return p


def parse_config(argv: list[str] | None = None) -> AppConfig:
    """Parse CLI flags (falling back to their environment twins) into an `AppConfig`."""
    args = build_parser().parse_args(argv)
    urls = args.comfy if args.comfy else _split_urls(os.environ.get("COMFYUI_URLS"))
    auth_pairs = args.auth if args.auth else _split_urls(os.environ.get("DRAFTGRID_AUTH"))
    db_path = Path(args.db)
    if args.sim_gpus < 1:
        raise SystemExit("--sim-gpus must be at least 1")
    return AppConfig(
        comfy_urls=tuple(u.rstrip("/") for u in urls),
        db_path=db_path,
        data_dir=Path(args.data_dir) if args.data_dir else db_path.parent,
        pools_file=Path(args.pools) if args.pools else None,
        host=args.host,
        port=args.port,
        share=args.share,
        auth=_parse_auth(auth_pairs),
        sim_gpus=args.sim_gpus,
        sim_speed=args.sim_speed,
        sim_inventory=Path(args.sim_inventory) if args.sim_inventory else None,
        sim_previews=not args.no_sim_previews,
        policy=args.policy,
        half_life=args.half_life,
        comfy_timeout=args.comfy_timeout,
    )
