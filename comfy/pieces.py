"""Pieces of a job: the images first_index .. first_index + batch_size - 1 of a seed's batch, made
in a prompt of their own — pure.

Why: the scheduler starts a server on one image of its first job (the first thumbnail sooner) and
moves the last images of a job to another server (a fast and a slow server balanced finer than
whole jobs of 4). Both only pay if a piece makes exactly the images the whole job would have, so
the seed and batch index of every image stay its identity.

How: the graph `comfy.workflow.build_workflow` made for the piece gets an empty latent of
first_index + batch_size images, sliced by LatentFromBatch (batch_index = first_index). The slice
keeps its batch indexes in the latent, and ComfyUI draws the initial noise of index i the same in
either graph. Samplers that draw fresh noise every step over the prompt's whole batch (ancestral,
SDE, ...) and img2img (one encoded source repeated) would not give the same pictures, so they
never split. This is a rewrite of the built graph rather than a branch inside the builder, so it
holds for whatever empty-latent node a model family uses.
"""

from __future__ import annotations

from typing import Any

from comfy.models import GenerationSpec
from comfy.workflow import build_workflow

# Samplers whose only randomness is the initial noise. The others (ancestral, SDE, ddpm, lcm, ...)
# draw fresh noise every step over the prompt's whole batch, so a picture's noise would depend on
# which other pictures share its prompt.
DETERMINISTIC_SAMPLERS = frozenset({
    "euler", "euler_cfg_pp", "heun", "heunpp2", "dpm_2", "lms", "dpmpp_2m", "dpmpp_2m_cfg_pp", "ipndm",
    "ipndm_v", "deis", "ddim", "uni_pc", "uni_pc_bh2", "res_multistep", "res_multistep_cfg_pp",
})
MAX_FIRST_INDEX = 63  # LatentFromBatch's batch_index maximum


def splits_exactly(spec: GenerationSpec) -> bool:
    """Whether the spec's images can be made in several prompts (pieces with `first_index`) and
    be the very same images: txt2img with a deterministic sampler."""
    return (spec.refine_from is None and spec.sampler_name in DETERMINISTIC_SAMPLERS
            and spec.first_index + spec.batch_size - 1 <= MAX_FIRST_INDEX)


def _is_empty_latent(node: dict[str, Any]) -> bool:
    inputs = node.get("inputs", {})
    kind = str(node.get("class_type", ""))
    return kind.startswith("Empty") and "Latent" in kind and "batch_size" in inputs


def as_piece(graph: dict[str, dict[str, Any]], spec: GenerationSpec) -> dict[str, dict[str, Any]]:
    """`graph` (built for `spec`) making batch indexes first_index .. of the seed's batch; the
    graph itself when `spec.first_index` is 0. A new dict: `graph` is left as it was."""
    if not spec.first_index:
        return graph
    empties = [node_id for node_id, node in graph.items() if _is_empty_latent(node)]
    if len(empties) != 1:
        raise ValueError(f"a piece needs exactly one empty latent in its graph, found {len(empties)}")
    [empty] = empties
    nodes = {node_id: {**node, "inputs": dict(node["inputs"])} for node_id, node in graph.items()}
    nodes[empty]["inputs"]["batch_size"] = spec.first_index + spec.batch_size
    piece = str(max((int(node_id) for node_id in nodes if node_id.isdigit()), default=len(nodes)) + 1)
    for node in nodes.values():
        for name, value in node["inputs"].items():
            if value == [empty, 0]:
                node["inputs"][name] = [piece, 0]
    nodes[piece] = {"class_type": "LatentFromBatch", "_meta": {"title": "Latent From Batch"},
                    "inputs": {"samples": [empty, 0], "batch_index": spec.first_index, "length": spec.batch_size}}
    return nodes


def build_piece_workflow(spec: GenerationSpec, *, init_image_name: str | None = None) -> dict[str, dict[str, Any]]:
    """`comfy.workflow.build_workflow` for a whole job or a piece of one (`as_piece`)."""
    return as_piece(build_workflow(spec, init_image_name=init_image_name), spec)
