"""SQL fragments the benches use to fill a store with made-up images straight in DuckDB."""

from __future__ import annotations


def random_loras_sql(loras: int) -> str:
    """An image's LoRA list from `range` columns `b` (batch) and `i` (image): none, one or two of
    `loras` names, a third each, the same for the same (b, i) on every run."""
    return f"""CASE hash(b, i, 1) % 3
           WHEN 0 THEN []
           WHEN 1 THEN [{{'name': 'lora' || (hash(b, i, 2) % {loras}), 'strength': 0.6}}]
           ELSE [{{'name': 'lora' || (hash(b, i, 2) % {loras}), 'strength': 0.6}},
                 {{'name': 'lora' || (hash(b, i, 3) % {loras}), 'strength': 0.7}}]
       END"""
