"""`python -m comfy.simulator --port 8188 [--gpus N --speed X --prompt-overhead S --gpu-factors 1,1.5
--inventory FILE --preview-method latent2rgb]`.

Prints one base URL per simulated GPU on stdout (ports counted up from --port; 0 = free ports),
then serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from comfy.simulator.inventory import load_inventory
from comfy.simulator.server import SimulatedComfy
from comfy.simulator.timemodel import TimeModel


def gpu_factors(text: str) -> list[float]:
    """`1,1.5` -> [1.0, 1.5]: each GPU's seconds per nominal GPU second, one per GPU in order."""
    factors = [float(part) for part in text.split(",") if part.strip()]
    if not factors or any(f <= 0 for f in factors):
        raise argparse.ArgumentTypeError("give positive numbers separated by commas, e.g. 1,1.5")
    return factors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m comfy.simulator", description="Simulated ComfyUI server(s).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8188, help="first port; 0 picks free ports")
    parser.add_argument("--gpus", type=int, default=1, help="how many servers (one per simulated GPU)")
    parser.add_argument("--speed", type=float, default=1.0, help="times faster than a real GPU (0 = instant)")
    parser.add_argument("--prompt-overhead", type=float, default=0.0,
                        help="fixed seconds per prompt besides GPU work (validation, save, fetch)")
    parser.add_argument("--gpu-factors", type=gpu_factors, default=[1.0],
                        help="per GPU, its seconds per nominal GPU second (1.5 = 1.5x slower); the last "
                             "one repeats for the remaining GPUs")
    parser.add_argument("--inventory", type=Path, default=None, help="inventory JSON (default assets/sim_inventory.json)")
    parser.add_argument("--preview-method", choices=["none", "latent2rgb"], default="none")
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    inventory = load_inventory(args.inventory)
    factors = args.gpu_factors + [args.gpu_factors[-1]] * max(0, args.gpus - len(args.gpu_factors))
    servers = [SimulatedComfy(inventory, name=f"sim-gpu-{i}", device_index=i, speed=args.speed,
                              time_model=TimeModel(prompt_overhead=args.prompt_overhead, gpu_factor=factors[i]),
                              previews=args.preview_method != "none",
                              output_dir=args.output_dir / f"gpu{i}" if args.output_dir else None)
               for i in range(args.gpus)]
    for index, server in enumerate(servers):
        print(await server.start(args.host, args.port + index if args.port else 0), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for server in servers:
            await server.stop()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
