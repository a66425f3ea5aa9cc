"""Run every `bench/bench_*.py` module's `main()`, or only the ones named on the command line."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

PREFIX = "bench_"


def available() -> list[str]:
    """Names of the bench modules next to this file, without the `bench_` prefix, sorted."""
    here = str(Path(__file__).resolve().parent)
    return sorted(m.name[len(PREFIX):] for m in pkgutil.iter_modules([here]) if m.name.startswith(PREFIX))


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown bench(es): {', '.join(unknown)}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    for name in names:
        print(f"== bench {name}", flush=True)
        sys.argv = [f"bench {name}"]  # a bench that parses its own options sees none of ours
        importlib.import_module(f"bench.{PREFIX}{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
