"""Benchmarks (not tests): each `bench/bench_<name>.py` module exposes `main() -> None` that prints
its results; `python -m bench` runs them all, `python -m bench <name>` runs one."""
