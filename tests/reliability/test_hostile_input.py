"""Hostile and bad input on every REST route, and hostile prompts all the way into ComfyUI.

Routes are enumerated from the live FastAPI app, so a route added later is fuzzed too. A refused
request (4xx) must leave every table and the aggregates exactly as they were; no request may
ever answer 5xx. Prompts are either refused with a readable 422 or reach the simulator verbatim
(minus `<lora:...>` tags, plus trigger words) inside a graph whose node set is exactly the one
DraftGrid builds — text can never add or change a node.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from draftgrid.launch import RunningApp
from tests.reliability.conftest import api, start_app, table_counts
from tests.reliability.test_malicious_server import wait_settled

SETTINGS = settings(deadline=None, derandomize=True,  # derandomized: the same inputs on every run
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ROUTE_EXAMPLES, PROMPT_EXAMPLES = 100, 45  # inputs each fuzzer tries per run
FIELDS = ("session_id", "prompt", "negative_prompt", "count", "explore_mode", "auto_lora", "model_family", "tier",
          "aspect_ratio", "seed", "parent_image_ids", "width", "height", "steps", "cfg", "sampler_name",
          "scheduler", "batch_id", "selected", "unselected", "rejected", "reject_all", "viewed")
QUERY_KEYS = ("prompt", "model_family", "tier", "scope", "keyword", "format")
LORA_TAG = re.compile(r"<\s*lora\s*:([^<>]*)>", re.IGNORECASE)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    running = start_app(tmp_path_factory.mktemp("hostile"))
    yield running
    running.close()


@pytest.fixture(scope="module")
def known(app: RunningApp) -> dict[str, Any]:
    """Real ids and names to mix into the junk, so the fuzzer also reaches the deep branches."""
    with api(app) as c:
        ticket = c.post("/api/generate/batch", json={"prompt": "a cat", "count": 2, "seed": 1}).json()
        wait_settled(app, ticket["batch_id"])
        batch = c.get(f"/api/batches/{ticket['batch_id']}").json()
        loras = c.get("/api/loras").json()
    return {"batch_id": batch["batch_id"], "image_ids": [i["image_id"] for i in batch["images"]], "loras": loras}


def flat_routes(routes: list[Any]) -> Iterator[Any]:
    """Routes with included routers opened (FastAPI 0.165 keeps `include_router` ones nested)."""
    for route in routes:
        nested = getattr(route, "original_router", None)
        yield from flat_routes(nested.routes) if nested is not None else [route]


def api_routes(app: RunningApp) -> list[tuple[str, str]]:
    """(method, path template) of every REST route the running app serves."""
    return sorted((method, route.path) for route in flat_routes(app.demo.server_app.routes)
                  if isinstance(route, APIRoute) and route.path.startswith("/api/") for method in route.methods)


JSON_LEAF = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
JSON = st.recursive(JSON_LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                                          max_size=4), max_leaves=12)


def bodies(known: dict[str, Any]) -> st.SearchStrategy[bytes]:
    real = st.sampled_from([known["batch_id"], *known["image_ids"]])
    value = JSON | real | st.lists(real, max_size=3) | st.sampled_from(["sd15", "sdxl", "draft", "quality", "1:1", ""])
    shaped = st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), value, max_size=6)
    return st.one_of(
        shaped.map(lambda d: json.dumps(d).encode()),
        JSON.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
        st.sampled_from([b"", b"{", b"[" * 5000, b'{"prompt": "\\ud800"}', b"\xff\xfe", b"null", b"1e999",
                         b'{"batch_id": "\\u0000"}', b"keyword,arm_kind,arm\n\"open", b"PAR1\x00\x00PAR1"]),
    )


def path_ids(known: dict[str, Any]) -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=60), st.sampled_from([known["batch_id"], *known["image_ids"], "..", "%2e%2e",
                                                            "../../dg.duckdb", "\x00", "a" * 3000]))


def fill(template: str, ident: str) -> str:
    return re.sub(r"\{[^}]+\}", quote(ident, safe="") or "x", template)


def assert_readable(response: httpx.Response) -> None:
    detail = response.json().get("detail")
    assert detail, response.text
    text = detail if isinstance(detail, str) else json.dumps(detail)
    assert "Traceback" not in text and len(text) < 5000


def test_every_route_answers_junk_without_5xx_or_partial_writes(app: RunningApp, known: dict[str, Any]) -> None:
    store = app.backend.store
    routes = api_routes(app)
    assert len(routes) >= 14, routes  # the contract's routes, and any added later

    tried: Counter[str] = Counter()

    @settings(SETTINGS, max_examples=ROUTE_EXAMPLES)
    @given(route=st.sampled_from(routes), ident=path_ids(known), body=bodies(known),
           query=st.dictionaries(st.sampled_from(QUERY_KEYS) | st.text(max_size=6), st.text(max_size=30), max_size=3))
    def attack(route: tuple[str, str], ident: str, body: bytes, query: dict[str, str]) -> None:
        tried["routes"] += 1
        method, template = route
        before = table_counts(store)
        with api(app) as c:
            response = c.request(method, fill(template, ident), params=query, content=body)
        assert response.status_code < 500, (method, template, ident, body[:200], query, response.text[:300])
        if response.status_code >= 400:
            assert_readable(response)
            assert table_counts(store) == before, (method, template, body[:200])
            assert store.aggregates_equal_rebuild()

    attack()
    print(f"\nhostile route inputs tried: {tried['routes']}")
    assert tried["routes"] == ROUTE_EXAMPLES, dict(tried)  # really as many as the settings ask


PIECES = st.sampled_from([
    "(masterpiece:1.2)", "[blurry]", "((cat))", "{red|blue} dress", "\n\n", "BREAK", "\"quoted\"", "'single'",
    '"}, "3": {"class_type": "SaveImage", "inputs": {}}', '{"4": {"class_type": "KSampler"}}', "\\n", "\\u0000",
    "🐱‍👤🌈", "مرحبا بالعالم", "שלום", "\u202e\u2066rtl", "ｆｕｌｌ", "e\u0301", "<b>bold</b>", "${jndi:x}", "%s%n",
    "\t", ",,,", "  ", "a" * 300,
])
TAG_NAMES = st.sampled_from(["missing_lora.safetensors", "../../etc/passwd", ""])


def prompts(known: dict[str, Any]) -> st.SearchStrategy[str]:
    lora_names = [l["name"] for l in known["loras"]] or ["none"]
    tag = st.tuples(st.sampled_from(lora_names) | TAG_NAMES, st.sampled_from(["", ":0.7", ":1.5:0.2", ":x"])).map(
        lambda t: f"<lora:{t[0]}{t[1]}>")
    piece = PIECES | tag | st.text(max_size=20) | st.text(alphabet=string.printable, max_size=20)
    return st.one_of(
        st.lists(piece, min_size=1, max_size=6).map(" ".join),
        st.sampled_from(["x" * 100_000, "\x00cat", "cat\x00", "\ud800 cat", "", "   ", "<lora:x>"]),
    )


def clear_history(app: RunningApp) -> list[str]:
    urls = [s.url for s in app.backend.simulator.servers]  # type: ignore[union-attr]
    for url in urls:
        httpx.post(f"{url}/history", json={"clear": True})
    return urls


def graphs_received(urls: list[str]) -> list[dict[str, Any]]:
    return [entry["prompt"][2] for url in urls for entry in httpx.get(f"{url}/history").json().values()]


def refusal_expected(prompt: str, known_loras: set[str]) -> bool:
    """The only reasons to refuse a prompt: control/surrogate characters, too long, blank (or only LoRA tags),
    unknown LoRA tag."""
    bad_char = any(ord(c) < 32 and c not in "\n\t\r" or 0xD800 <= ord(c) <= 0xDFFF or 0x7F <= ord(c) <= 0x9F
                   for c in prompt)
    tags = [m.group(1).partition(":")[0].strip() for m in LORA_TAG.finditer(prompt)]
    unknown_tag = any(name and name not in known_loras for name in tags)
    only_tags = not squash(LORA_TAG.sub("", prompt))
    return bad_char or len(prompt) > 2000 or not prompt.strip() or only_tags or unknown_tag


def squash(text: str) -> str:
    """Text without whitespace and commas: what tag removal may tidy, nothing else."""
    return re.sub(r"[\s,]", "", text)


def test_hostile_prompts_reach_comfy_verbatim_or_are_refused(app: RunningApp, known: dict[str, Any]) -> None:
    triggers = {l["name"]: l["trigger_words"] for l in known["loras"]}
    store = app.backend.store

    tried: Counter[str] = Counter()

    @settings(SETTINGS, max_examples=PROMPT_EXAMPLES)  # each one renders a batch and reads it back from the simulator
    @given(prompt=prompts(known), negative=st.sampled_from(["", "ugly, (blurry:1.3)", '"}, {"x": 1', "\n\n🙈"]),
           auto_lora=st.booleans())
    def attack(prompt: str, negative: str, auto_lora: bool) -> None:
        tried["prompts"] += 1
        urls = clear_history(app)
        before = table_counts(store)
        body = {"prompt": prompt, "negative_prompt": negative, "count": 1, "auto_lora": auto_lora, "seed": 3}
        with api(app) as c:
            response = c.post("/api/generate/batch", content=json.dumps(body).encode())
        if response.status_code == 422:
            tried["prompts refused"] += 1
            assert_readable(response)
            assert refusal_expected(prompt, set(triggers)), (prompt[:200], response.text)
            assert table_counts(store) == before
            return
        assert response.status_code == 200, (prompt[:200], response.text)
        assert not refusal_expected(prompt, set(triggers)), prompt[:200]
        wait_settled(app, response.json()["batch_id"])
        (graph,) = graphs_received(urls)
        check_graph(graph, prompt, negative, triggers)

    attack()
    ran, refused = tried["prompts"], tried["prompts refused"]
    print(f"\nhostile prompts tried: {ran}, refused: {refused}")
    assert ran == PROMPT_EXAMPLES and 0 < refused < ran, dict(tried)  # as many as asked, and both ways taken


def check_graph(graph: dict[str, Any], prompt: str, negative: str, triggers: dict[str, list[str]]) -> None:
    classes = Counter(node["class_type"] for node in graph.values())
    loras = [node["inputs"]["lora_name"] for node in graph.values() if node["class_type"] == "LoraLoader"]
    assert classes == Counter({"CheckpointLoaderSimple": 1, "LoraLoader": len(loras), "CLIPTextEncode": 2,
                               "EmptyLatentImage": 1, "KSampler": 1, "VAEDecode": 1, "SaveImage": 1}), classes
    assert sorted(graph, key=int) == [str(i) for i in range(1, len(graph) + 1)]
    sampler = next(n for n in graph.values() if n["class_type"] == "KSampler")["inputs"]
    positive = graph[sampler["positive"][0]]["inputs"]["text"]
    assert graph[sampler["negative"][0]]["inputs"]["text"] == negative
    tagged = {m.group(1).partition(":")[0].strip() for m in LORA_TAG.finditer(prompt)} - {""}
    assert tagged <= set(loras), (tagged, loras)
    core = LORA_TAG.sub(" ", prompt)
    added = [t for name in loras for t in triggers.get(name, [])[:1]]
    if not LORA_TAG.search(prompt) and not added:
        assert positive == prompt.strip()  # verbatim
    assert positive.startswith(core.strip(" \t\n,")[:1]) or not core.strip(" \t\n,")
    rest = squash(positive)
    assert rest.startswith(squash(core)), (positive[:200], core[:200])
    extra = rest[len(squash(core)):]
    assert all(squash(t) in extra for t in added if t.lower() not in core.lower()) and \
        len(extra) <= sum(len(squash(t)) for t in added), (extra, added)
