"""The full-size viewer (issue 13): one image of the shown batch with everything that made it.

The viewer's HTML is built here from the batch view (pure); `assets/triage.js` opens and closes
it, moves through the batch (keys, swipes) and sends its buttons' commands down the same queue as
the keyboard's, so a tap in the viewer and a key press take the same path to the facade. The
compare overlay (`draftgrid/ui_compare.py`) is framed and buttoned the same way.
"""

from __future__ import annotations

import html

from draftgrid.views import BatchView, ImageView, short_checkpoint

# the viewer's buttons: (command for triage.js, label); the commands are the keyboard's
VIEWER_BUTTONS = (("left", "◀ previous"), ("toggle", "✓ select"), ("reject", "✗ reject"),
                  ("favourite", "♥ favourite"), ("compare", "⇆ compare"), ("refine", "refine selected"),
                  ("right", "next ▶"), ("escape", "close ✕"))

VIEWER_CSS = """
#dg-viewer, #dg-compare { display: none; }
#dg-viewer.dg-open, #dg-compare.dg-open { display: block !important; position: fixed; inset: 0; z-index: 1000;
  overflow: auto; background: #111827 !important; padding: 8px; max-width: none !important; }
#dg-viewer.dg-open, #dg-viewer.dg-open *, #dg-compare.dg-open, #dg-compare.dg-open * { color: #f9fafb !important; }
.dg-viewer-bar { display: flex; flex-wrap: wrap; gap: 6px; margin-bottom: 8px; }
.dg-viewer-bar button { padding: 6px 10px; border-radius: 6px; background: #374151; color: #f9fafb;
  border: 1px solid #4b5563; font-size: 15px; }
#dg-viewer-body .dg-view { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
#dg-viewer-body img { max-width: min(100%, 1024px); max-height: 86vh; object-fit: contain; touch-action: pan-y; }
#dg-viewer-body table { font-size: 14px; border-collapse: collapse; }
#dg-viewer-body th, #dg-viewer-body td { text-align: left; padding: 2px 10px 2px 0; border: none !important;
  background: transparent !important; }
#dg-viewer-body th { font-weight: 500; opacity: .7; }
#dg-viewer-body .dg-mark { font-weight: 700; font-size: 16px; }
"""


def viewer_bar(commands: tuple[tuple[str, str], ...] = VIEWER_BUTTONS) -> str:
    """The viewer's (or the compare overlay's) buttons, each carrying the command it sends."""
    buttons = "".join(f"<button type='button' data-dg-cmd='{cmd}'>{html.escape(label)}</button>"
                      for cmd, label in commands)
    return f"<div class='dg-viewer-bar'>{buttons}</div>"


def _mark(image: ImageView) -> str:
    state = {"selected": "✓ selected", "rejected": "✗ rejected"}.get(image.state, "not reviewed")
    return state + (" · ♥ favourite" if image.favourite else "")


def _loras(image: ImageView, why: dict[str, str]) -> str:
    if not image.record.loras:
        return "none"
    return "<br>".join(f"{html.escape(short_checkpoint(name))} {strength:g} — "
                       f"{html.escape(why.get(name, 'chosen for this batch'))}" for name, strength in image.record.loras)


def viewer_html(view: BatchView, image_id: str | None, why: dict[str, str] | None = None) -> str:
    """The image `image_id` of `view` full size beside what made it; `why` says per LoRA file why
    it was chosen. Empty when the image is not a finished image of this batch."""
    done = [v for v in view.images if v.status == "done"]
    position = next((i for i, v in enumerate(done) if v.record.image_id == image_id), None)
    if position is None:
        return ""
    image = done[position]
    r, b = image.record, view.batch
    rows = [
        ("checkpoint", html.escape(r.checkpoint)), ("LoRAs", _loras(image, why or {})),
        ("seed", f"{r.seed} · batch index {r.batch_index}"), ("sampler", html.escape(r.sampler_name)),
        ("scheduler", html.escape(r.scheduler)), ("steps", str(r.steps)), ("CFG", f"{r.cfg:g}"),
        ("size", f"{r.width} × {r.height}"), ("tier", html.escape(b.tier)),
        ("refined from", html.escape(r.parent_image_id or "— (a first draft)")),
        ("server", html.escape(r.server or "—")),
        ("time taken", f"{r.seconds:.1f} s" if r.seconds is not None else "—"),
        ("prompt", html.escape(b.prompt)),
    ]
    table = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    picture = ("<div class='dg-removed'>removed to save space (its settings and seed stay)</div>" if image.pruned
               else f"<img src='/api/images/{r.image_id}' alt='image {position + 1}'>")
    return (f"<div class='dg-view' data-image-id='{r.image_id}' data-state='{image.state}' "
            f"data-favourite='{str(image.favourite).lower()}'>{picture}<div>"
            f"<div class='dg-mark' id='dg-viewer-mark'>{position + 1} / {len(done)} · {_mark(image)}</div>"
            f"<table>{table}</table></div></div>")
