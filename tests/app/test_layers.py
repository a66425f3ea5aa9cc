"""The layering rules of docs/ARCHITECTURE.md, checked on the source: imports only point downward.

families/ (the model-family registry) imports no other layer; comfy/ and learning/ may import it but
never each other or draftgrid/; Gradio appears only in the UI module
and app.py; the UI and the REST API reach the service facade, never the store, pool or board.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize(("folder", "forbidden"), [
    ("comfy", ("learning", "draftgrid", "gradio")),
    ("learning", ("comfy", "draftgrid", "gradio", "httpx", "fastapi", "aiohttp", "websockets")),
    ("families", ("comfy", "learning", "draftgrid", "gradio", "httpx", "fastapi", "aiohttp", "websockets")),
])
def test_lower_layers_do_not_import_upward_or_sideways(folder: str, forbidden: tuple[str, ...]) -> None:
    bad = {f"{p.relative_to(ROOT)}: {m}" for p in sources(folder) for m in imports(p)
           if m.split(".")[0] in forbidden}
    assert not bad, sorted(bad)


UI_MODULES = tuple(str(p.relative_to(ROOT)) for p in sorted((ROOT / "draftgrid").glob("ui*.py")))


def test_gradio_only_in_the_ui_and_the_entry_points() -> None:
    allowed = {*UI_MODULES, "draftgrid/launch.py", "app.py"}
    users = {str(p.relative_to(ROOT)) for p in [*sources("draftgrid"), ROOT / "app.py"]
             if any(m.split(".")[0] == "gradio" for m in imports(p))}
    assert users <= allowed, sorted(users - allowed)


def test_ui_and_rest_reach_the_service_facade_only() -> None:
    internals = ("learning.store", "comfy.pool", "draftgrid.batch_", "draftgrid.live", "draftgrid.servers",
                 "draftgrid.reviews", "draftgrid.stats")
    for name in (*UI_MODULES, *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "draftgrid").glob("api*.py")))):
        reached = {m for m in imports(ROOT / name) if m.startswith(internals)}
        assert not reached, f"{name} imports {sorted(reached)}"
        text = (ROOT / name).read_text()
        assert "service.store" not in text and "service._" not in text and "svc._" not in text, name
