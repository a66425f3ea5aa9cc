"""Which nodes of a prompt run, in which order, and which can be served from the cache.

The order copies ComfyUI's observable behaviour: nodes are discovered depth first from each
output (a stack, inputs in the prompt's order), and among the nodes that are ready ComfyUI
prefers an output node, then a node feeding an output, then one two hops from an output, else
the first discovered. Clients see this order in `executing` messages.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable

Prompt = dict[str, dict[str, Any]]


def is_link(value: Any) -> bool:
    """A `[node_id, slot]` input (validation has already checked the shape)."""
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


def links(node: dict[str, Any]) -> list[str]:
    """Ids of the nodes this node reads from, in input order."""
    return [value[0] for value in node["inputs"].values() if is_link(value)]


def readers(prompt: Prompt, node_id: str, class_types: tuple[str, ...]) -> list[str]:
    """Ids of the nodes of these classes that read an output of `node_id`."""
    return [other for other, node in prompt.items() if node["class_type"] in class_types and node_id in links(node)]


def execution_order(prompt: Prompt, outputs: list[str], is_cached: Callable[[str], bool],
                    is_output: Callable[[str], bool]) -> list[str]:
    """The nodes to stage, in run order; cached nodes are left out unless they are outputs."""
    pending: dict[str, None] = {}
    blocking: dict[str, set[str]] = {}  # node -> nodes waiting for it
    waiting_on: dict[str, set[str]] = {}
    for output_id in outputs:
        stack = [output_id]
        while stack:
            node_id = stack.pop()
            if node_id in pending:
                continue
            pending[node_id] = None
            waiting_on.setdefault(node_id, set())
            blocking.setdefault(node_id, set())
            for source in links(prompt[node_id]):
                if not is_cached(source):
                    stack.append(source)
                    waiting_on[node_id].add(source)
                    blocking.setdefault(source, set()).add(node_id)

    def leads_to_output(node_id: str, hops: int) -> bool:
        if hops == 0:
            return is_output(node_id)
        return any(leads_to_output(child, hops - 1) for child in blocking[node_id])

    order: list[str] = []
    while pending:
        ready = [node_id for node_id in pending if not waiting_on[node_id]]
        chosen = next((n for hops in (0, 1, 2) for n in ready if leads_to_output(n, hops)), ready[0])
        order.append(chosen)
        del pending[chosen]
        for child in blocking[chosen]:
            waiting_on[child].discard(chosen)
    return order


def signatures(prompt: Prompt, salt: Callable[[str, dict[str, Any]], str]) -> dict[str, str]:
    """A cache key per node: its class, literal inputs and the keys of what it links to.

    `salt(class_type, inputs)` adds what is outside the graph (e.g. the bytes of a LoadImage file),
    like ComfyUI's IS_CHANGED, so an edited input file is not served from the cache.
    """
    keys: dict[str, str] = {}

    def key(node_id: str) -> str:
        if node_id not in keys:
            node = prompt[node_id]
            inputs = {name: [key(value[0]), value[1]] if is_link(value) else value
                      for name, value in sorted(node["inputs"].items())}
            raw = json.dumps([node["class_type"], inputs, salt(node["class_type"], node["inputs"])],
                             sort_keys=True, default=str)
            keys[node_id] = hashlib.sha256(raw.encode()).hexdigest()
        return keys[node_id]

    for node_id in prompt:
        key(node_id)
    return keys
