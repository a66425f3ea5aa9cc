"""The Gradio Blocks UI: Generate, Stats and GPUs tabs over the same service as the REST API.

Click safety (measured in a real browser with Gradio's defaults, clicks got lost): generation
shows its progress on a small status component (`show_progress_on`), never on the gallery; a
click or tap on a thumbnail goes through the page's send queue like a key (`assets/triage.js`:
one request at a time, in order — as concurrent gallery events, a hurried click's answer could
arrive after a later one's and leave a stale selection shown); the quick events use
`trigger_mode="multiple"`, no progress overlay and no queue limit; and every render of the
gallery — from the streaming generator or from a click — is drawn from the server-side
selection, so a yield can never overwrite a mark.
"""

from __future__ import annotations

import html
import io
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from PIL import Image
from pydantic import ValidationError

from draftgrid.errors import ServiceError
from draftgrid.schemas import ASPECT_RATIOS, DEFAULT_FAMILY, FeedbackRequest, GenerateRequest, readable_errors
from draftgrid.ui_batch_actions import BatchActions
from draftgrid.ui_common import error_html, user_of
from draftgrid.ui_gallery import Gallery
from draftgrid.ui_compare import ComparePanel
from draftgrid.ui_history import HistoryPanel
from draftgrid.ui_reset_monitor import ResetMonitorPanel
from draftgrid.ui_triage import TRIAGE_CSS, TriagePanel, page_js
from draftgrid.views import short_checkpoint, short_names
from learning.recommend.types import MAX_COUNT
from draftgrid.service import BatchTicket, BatchView, DraftGridService, SharingState
from learning.models import DEFAULT_USER, BatchRecord


CSS = """
#dg-grid .grid-container { grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)) !important; }
#dg-grid .thumbnail-item { width: 100% !important; height: auto !important; aspect-ratio: 1 / 1; }
@media (max-width: 640px) {
  #dg-grid .grid-container { grid-template-columns: repeat(2, minmax(0, 1fr)) !important; }
}
.dg-bar { height: 10px; background: #e5e7eb; border-radius: 5px; overflow: hidden; margin: 4px 0; }
.dg-bar > div { height: 100%; background: #22c55e; transition: width .2s; }
.dg-banner { background: #fef3c7; color: #78350f; padding: 8px 12px; border-radius: 6px; font-weight: 600; }
.dg-error { color: #b91c1c; font-weight: 600; }
#dg-auto-lora { min-width: 8.5em !important; }
#dg-auto-lora label, #dg-auto-lora span { white-space: nowrap; overflow: visible; }
"""

GENERATE_CONCURRENCY = "generate"
MAX_PREVIEW_PIXELS = 2048 * 2048  # ComfyUI's previews are at most the latent size × 8
StreamOut = tuple[Any, ...]
# every 10 minutes, Gradio deletes the files it cached for this app (live previews, exports) that
# are over an hour old; without it every preview of every batch stays in its cache folder
CACHE_SWEEP = (600, 3600)


def session_of(request: gr.Request | None) -> str:
    return (getattr(request, "session_hash", None) or "default") if request is not None else "default"


def progress_html(view: BatchView) -> str:
    done = sum(1 for i in view.images if i.status == "done")
    failed = [i for i in view.images if i.status == "failed"]
    total = max(1, len(view.images))
    pct = int(100 * (done + len(failed)) / total)
    if view.live is not None and not view.live.finished and view.live.steps[1]:
        steps_done, steps_expected = view.live.steps  # sampler steps: the bar moves between images too
        pct = max(pct, min(99, int(100 * steps_done / steps_expected)))
    parts = [f"<div class='dg-bar'><div style='width:{pct}%'></div></div>",
             f"<span id='dg-count' data-batch='{view.batch.batch_id}'>{done} / {len(view.images)} images · "
             f"{view.status}</span> · batch {view.batch.batch_id[:6]}"]
    if failed:
        reasons = sorted({i.record.error or "failed" for i in failed})
        parts.append(f"<div class='dg-error'>{len(failed)} failed: {html.escape('; '.join(reasons)[:400])}</div>")
    return "".join(parts)


def strategy_line(ticket: BatchTicket) -> str:
    s = ticket.strategy
    loras = ", ".join(f"{short_checkpoint(str(l['name']))} {l['strength']}" for l in ticket.loras) or "none"
    dist = " · ".join(f"{short_checkpoint(c)} ×{n}" for c, n in ticket.checkpoint_distribution.items())
    message = short_names(str(s["message"]), [*ticket.checkpoint_distribution, str(s["recommended"])])
    # "name@7.0" (a checkpoint at a CFG) would be rendered as an e-mail link
    return f"**{message.replace('@', '&#64;')}**  \n{dist}  \nLoRAs: {loras}"


def selection_line(view: BatchView) -> str:
    selected = sum(1 for i in view.images if i.state == "selected")
    rejected = sum(1 for i in view.images if i.state == "rejected")
    return f"<span id='dg-selected'>{selected} selected</span>" + (f" · {rejected} rejected" if rejected else "")


def batch_label(batch: BatchRecord) -> str:
    when = batch.created_at.strftime("%H:%M:%S") if batch.created_at else ""
    prompt = batch.prompt if len(batch.prompt) <= 40 else batch.prompt[:39] + "…"
    return f"{when} · {batch.tier} · {batch.count} · {prompt}"


def _error_out(message: str) -> StreamOut:
    """A stream output that only shows an error and leaves the grid as it was."""
    return gr.skip(), gr.skip(), error_html(message), gr.skip(), None, gr.skip(), gr.skip()


def _preview(view: BatchView) -> Image.Image | None:
    """The live preview, unless it is unreadable or absurdly large (a server's decompression bomb:
    Gradio would decode it in full)."""
    if view.live is None or view.live.preview is None or view.live.finished:
        return None
    try:
        image = Image.open(io.BytesIO(view.live.preview))
    except (OSError, Image.DecompressionBombError):
        return None
    return image if image.width * image.height <= MAX_PREVIEW_PIXELS else None


class DraftGridUI:
    """Builds the Blocks app; handlers are methods so they share the service."""

    def __init__(self, service: DraftGridService) -> None:
        self.service = service

    # ---------------------------------------------------------------- streaming
    def _stream(self, user: str, ticket: BatchTicket) -> Iterator[StreamOut]:
        """(batch id, strategy, status, gallery, preview, selection, picker) on every change of the batch."""
        strategy = strategy_line(ticket)
        picker: Any = self._picker(user, ticket.batch_id)
        shown: tuple[tuple[str, str, bool], ...] | None = None
        for view in self.service.stream(user, ticket.batch_id):
            # the gallery is re-sent only when an image, a mark or a removal changed: Gradio spends
            # ~0.5 ms per thumbnail on a gallery value, and most updates are sampler progress
            marks = tuple((v.record.image_id, v.state, v.pruned) for v in view.images if v.status == "done")
            gallery = self._gallery(view) if marks != shown else gr.skip()
            shown = marks
            yield (ticket.batch_id, strategy, progress_html(view), gallery, _preview(view), selection_line(view),
                   picker)
            picker = gr.skip()

    def _gallery(self, view: BatchView) -> dict[str, Any]:
        """The gallery's new value, always as an update (never a plain value): Gradio 6.31 keeps one
        more copy of a component in the session each time it gets `gr.skip()` and then a plain
        value, so a session grew by a gallery per streamed update; updates replace the copy."""
        return gr.update(value=self.service.gallery_of(view))

    def _picker(self, user: str, current: str) -> Any:
        """The recent-batches dropdown, so earlier grids can be reopened (and refined)."""
        choices = [(batch_label(b), b.batch_id) for b in self.service.recent_batches(user, limit=30)]
        return gr.Dropdown(choices=choices, value=current)

    def open_batch(self, batch_id: str | None, request: gr.Request) -> StreamOut:
        """Show an earlier batch (from the picker) with its strategy line and selection."""
        if not batch_id:
            return (gr.skip(),) * 7
        user = user_of(request)
        try:
            view = self.service.batch_view(user, batch_id)
        except ServiceError as exc:
            return gr.skip(), gr.skip(), error_html(str(exc)), gr.skip(), None, gr.skip(), gr.skip()
        b = view.batch
        strategy = f"**{b.strategy} · {short_checkpoint(b.recommended)} ({b.confidence:.2f})** · {b.tier}"
        return (batch_id, strategy, progress_html(view), self._gallery(view), None,
                selection_line(view), gr.skip())

    def _start(self, request_fields: dict[str, Any], request: gr.Request | None) -> Iterator[StreamOut]:
        user = user_of(request)
        try:
            req = GenerateRequest(session_id=session_of(request), **request_fields)
            ticket = self.service.generate(user, req)
        except ValidationError as exc:
            yield _error_out(readable_errors(exc))
            return
        except ServiceError as exc:
            yield _error_out(str(exc))
            return
        yield from self._stream(user, ticket)

    def generate(self, prompt: str, negative: str, aspect: str, auto_lora: bool, mode: str, family: str,
                 count: float, steps: float | None, cfg: float | None, sampler: str | None, seed: float | None,
                 fast_drafts: bool, request: gr.Request) -> Iterator[StreamOut]:
        fields = dict(prompt=prompt or "", negative_prompt=negative or "", aspect_ratio=aspect, auto_lora=auto_lora,
                      fast_drafts=bool(fast_drafts),
                      explore_mode=(mode == "Explore"), model_family=family, count=int(count or 0), tier="draft",
                      steps=int(steps) if steps else None, cfg=cfg if cfg else None,
                      sampler_name=sampler or None, seed=int(seed) if seed not in (None, "") else None)
        yield from self._start(fields, request)

    def refine(self, batch_id: str | None, request: gr.Request) -> Iterator[StreamOut]:
        if not batch_id:
            yield _error_out("generate a batch and select images first")
            return
        user = user_of(request)
        selected = [v.record.image_id for v in self.service.batch_view(user, batch_id).images if v.state == "selected"]
        if not selected:
            yield _error_out("select the images to refine first")
            return
        yield from self._start(dict(prompt="", parent_image_ids=selected, count=len(selected)), request)

    # ---------------------------------------------------------------- review
    def _review(self, user: str, batch_id: str) -> tuple[Any, str]:
        view = self.service.batch_view(user, batch_id)
        return self._gallery(view), selection_line(view)

    def review(self, batch_id: str | None, request: gr.Request) -> tuple[Any, str]:
        """The grid and selection line as the server has them now."""
        return self._review(user_of(request), batch_id) if batch_id else (gr.skip(), gr.skip())

    def reject_all(self, batch_id: str | None, request: gr.Request) -> tuple[Any, str]:
        if not batch_id:
            return gr.skip(), gr.skip()
        user = user_of(request)
        self.service.feedback(user, FeedbackRequest(batch_id=batch_id, reject_all=True))
        return self._review(user, batch_id)

    def stop_button(self, batch_id: str | None, request: gr.Request) -> Any:
        """Stop is enabled only while the shown batch still runs (queued or running)."""
        running = False
        if batch_id:
            try:
                running = self.service.batch_view(user_of(request), batch_id).status in ("queued", "running")
            except ServiceError:
                running = False
        return gr.Button(interactive=running)

    def stop(self, batch_id: str | None, request: gr.Request) -> None:
        """Cancel the shown batch on every server; its stream then ends with what finished."""
        if batch_id:
            self.service.cancel(user_of(request), batch_id)

    # ---------------------------------------------------------------- LoRA vetoes
    def veto_choices(self, batch_id: str | None, request: gr.Request) -> Any:
        """Every (LoRA of the shown batch, keyword of its prompt) pair, to veto one."""
        if not batch_id:
            return gr.update(choices=[], value=None)
        view = self.service.batch_view(user_of(request), batch_id)
        loras = dict.fromkeys(name for v in view.images for name, _ in v.record.loras)
        keywords = [k for k in view.batch.keywords if " " not in k]
        return gr.update(choices=[(f"never use {name.removesuffix('.safetensors')} for '{keyword}'",
                                   f"{keyword}\t{name}") for name in loras for keyword in keywords], value=None)

    def veto(self, choice: str | None, request: gr.Request) -> str:
        if not choice:
            return ""
        keyword, lora = choice.split("\t", 1)
        self.service.set_rule(user_of(request), "lora-veto", keyword, lora, True)
        return f"<span id='dg-veto-done'>{lora.removesuffix('.safetensors')} is vetoed for '{keyword}'</span>"

    # ---------------------------------------------------------------- stats
    def stats(self, scope: str, keyword_filter: str, request: gr.Request) -> tuple[Any, ...]:
        user = user_of(request)
        scope_name = "global" if scope == "All users" else "user"
        ckpt = _rates_frame(self.service.arm_totals(user, "checkpoint", scope_name), "checkpoint")
        lora = _rates_frame(self.service.arm_totals(user, "lora", scope_name), "lora")
        combos = _rates_frame(self.service.arm_totals(user, "lora-combination", scope_name), "family | LoRA set")
        cfgs = _rates_frame(self.service.arm_totals(user, "cfg", scope_name), "checkpoint @ CFG")
        keywords = self.service.keyword_table(user, scope_name, keyword_filter or None).round(3)
        history = self.service.confidence_history(user, scope_name)
        # whole batch numbers on the x axis (a float column made Vega label it "1.000000"), the
        # date in the tooltip
        history = history.assign(batch=range(1, len(history) + 1),
                                 date=history["created_at"].dt.strftime("%Y-%m-%d %H:%M")) if len(history) else \
            pd.DataFrame({"batch": pd.Series([], dtype=int), "confidence": [], "strategy": [], "date": []})
        summary = (f"<span id='dg-stats-summary'>{int(ckpt['selected'].sum()) if len(ckpt) else 0} selected of "
                   f"{int(ckpt['total'].sum()) if len(ckpt) else 0} reviewed images</span>")
        return summary, ckpt, ckpt, keywords, lora, combos, cfgs, history

    # ---------------------------------------------------------------- negative-prompt suggestions
    def negative_chips(self, prompt: str, negative: str, family: str, request: gr.Request) -> tuple[Any, Any]:
        """The suggested negative terms for this prompt as chips (click: add) and as dismiss choices."""
        if not (prompt or "").strip():
            return gr.update(choices=[], value=None, visible=False), gr.update(choices=[], value=None, visible=False)
        rec = self.service.recommendation(user_of(request), prompt, family, "draft", negative or "")
        found = rec.settings.get("negative_suggestions", [])
        chips = [s["term"] for s in found]
        dismiss = [(s["term"], f"{s['keyword']}\t{s['term']}") for s in found]
        return (gr.update(choices=chips, value=None, visible=bool(chips)),
                gr.update(choices=dismiss, value=None, visible=bool(chips)))

    @staticmethod
    def add_negative(term: str | None, negative: str) -> Any:
        """A clicked chip joins the negative prompt (nothing is added without the click)."""
        if not term:
            return gr.skip()
        return f"{negative.rstrip(' ,')}, {term}" if (negative or "").strip(" ,") else term

    def dismiss_negative(self, choice: str | None, request: gr.Request) -> None:
        if choice:
            keyword, term = choice.split("\t", 1)
            self.service.set_rule(user_of(request), "negative-dismissal", keyword, term, True)

    def export(self, fmt: str, request: gr.Request) -> str:
        data = self.service.export_preferences(user_of(request), fmt)
        out = Path(tempfile.mkdtemp(prefix="draftgrid-export-")) / f"draftgrid-preferences.{fmt}"
        out.write_bytes(data)
        return str(out)

    def import_(self, file: str | None, request: gr.Request) -> str:
        if not file:
            return "choose an exported .csv or .parquet file first"
        fmt = "parquet" if file.endswith(".parquet") else "csv"
        try:
            rows = self.service.import_preferences(user_of(request), Path(file).read_bytes(), fmt)
        except ServiceError as exc:
            return error_html(str(exc))
        return f"Imported {rows} preference rows."

    # ---------------------------------------------------------------- sharing with the crowd
    def sharing(self, request: gr.Request) -> tuple[Any, str]:
        """The user's sharing switch and what it means on this deployment."""
        return _sharing_out(self.service.sharing(user_of(request)))

    def set_sharing(self, share: bool, request: gr.Request) -> tuple[Any, str]:
        return _sharing_out(self.service.set_sharing(user_of(request), bool(share)))

    # ---------------------------------------------------------------- GPUs
    def gpus(self, request: gr.Request) -> tuple[pd.DataFrame, pd.DataFrame]:
        rows = [{
            "server": s.name, "status": "online" if s.online else "offline",
            "loaded checkpoint": (s.loaded_checkpoint or "—").removesuffix(".safetensors"),
            "images done": s.images_done, "queue": f"{s.queue_running} running, {s.queue_pending} pending",
            "s / image": round(s.seconds_per_image, 2) if s.seconds_per_image else None,
            "device": s.device, "VRAM free / total (GB)": f"{s.vram_free / 2**30:.1f} / {s.vram_total / 2**30:.1f}",
            "url": s.url, "last error": s.last_error or "",
        } for s in self.service.gpus()]
        ckpt = _rates_frame(self.service.arm_totals(user_of(request), "checkpoint"), "checkpoint")
        return pd.DataFrame(rows), ckpt

    # ---------------------------------------------------------------- layout
    def build(self) -> gr.Blocks:
        svc = self.service
        samplers = svc.samplers()
        families = svc.model_families() or [DEFAULT_FAMILY]
        with gr.Blocks(title="DraftGrid", delete_cache=CACHE_SWEEP) as demo:
            if svc.simulated:
                gr.HTML("<div class='dg-banner' id='dg-sim-banner'>⚠ Simulated GPUs — the built-in ComfyUI "
                        "simulator is serving placeholder images, not real Stable Diffusion. Start the app with "
                        "--comfy URL to use real servers.</div>")
            gr.Markdown("# DraftGrid\nA grid of fast drafts; click the ones you like, refine the favourites.")
            batch_state = gr.State(None)
            with gr.Tab("Generate", id="generate") as generate_tab:
                with gr.Row(equal_height=True):
                    prompt = gr.Textbox(label="Prompt", lines=2, scale=5, elem_id="dg-prompt",
                                        placeholder="a photorealistic portrait of an old fisherman, golden hour")
                    generate_btn = gr.Button("Generate", variant="primary", scale=1, elem_id="dg-generate")
                negative = gr.Textbox(label="Negative prompt", lines=1, elem_id="dg-negative")
                with gr.Row():
                    negative_chips = gr.Radio([], label="Suggested from your picks (click to add)", visible=False,
                                              elem_id="dg-negative-chips")
                    negative_dismiss = gr.Dropdown([], label="Stop suggesting", visible=False,
                                                   elem_id="dg-negative-dismiss")
                with gr.Row():
                    aspect = gr.Dropdown(list(ASPECT_RATIOS), value="1:1", label="Aspect ratio", elem_id="dg-aspect",
                                         min_width=100)
                    auto_lora = gr.Checkbox(value=True, label="Auto-LoRA", elem_id="dg-auto-lora", min_width=100)
                    mode = gr.Radio(["Explore", "Quick"], value="Explore", label="Mode", elem_id="dg-mode")
                    family = gr.Radio(families, value=families[0], label="Model family", elem_id="dg-family")
                    count = gr.Slider(1, MAX_COUNT, value=20, step=1, label="Images", elem_id="dg-count-slider")
                with gr.Accordion("Advanced", open=False):
                    with gr.Row():
                        steps = gr.Number(label="Steps (empty: tier default)", precision=0, minimum=1, maximum=150)
                        cfg = gr.Number(label="CFG (empty: tier default)", minimum=0, maximum=30)
                        sampler = gr.Dropdown(["", *samplers], value="", label="Sampler (empty: tier default)")
                        seed = gr.Number(label="Seed (empty: random)", precision=0, minimum=0)
                        fast_drafts = gr.Checkbox(value=True, label="Fast drafts (a distilled LoRA / checkpoint "
                                                  "when the servers have one)", elem_id="dg-fast-drafts")
                strategy_md = gr.Markdown(elem_id="dg-strategy")
                status = gr.HTML(elem_id="dg-status")
                with gr.Row():
                    gallery = Gallery(label="Drafts — click to select", columns=5, allow_preview=False,
                                         object_fit="contain", height="auto", elem_id="dg-grid", scale=5,
                                         interactive=False, min_width=320, show_label=False)
                    preview = gr.Image(label="Live preview", height=200, scale=1, min_width=120, interactive=False,
                                       elem_id="dg-preview", show_label=True)
                with gr.Row(equal_height=True):
                    selection_md = gr.HTML(elem_id="dg-selection", min_width=120)
                    picker = gr.Dropdown(label="Earlier batches", choices=[], elem_id="dg-batch-picker",
                                         min_width=240)
                    stop_btn = gr.Button("Stop", elem_id="dg-stop", variant="stop", min_width=80, interactive=False)
                    reject_btn = gr.Button("Reject all", elem_id="dg-reject-all", variant="secondary")
                    refine_btn = gr.Button("Refine selected", elem_id="dg-refine", variant="primary")
                with gr.Row(equal_height=True):
                    veto_pick = gr.Dropdown([], label="Veto a LoRA of this batch for a keyword", elem_id="dg-veto",
                                            min_width=240)
                    veto_md = gr.HTML(elem_id="dg-veto-status")
                batch_actions = BatchActions(self)  # Retry failed, Use this prompt and settings again
                batch_actions.build()
                TriagePanel(svc, self._review).build(batch_state, gallery, selection_md)  # keys, touch, viewer

            stream_outputs = [batch_state, strategy_md, status, gallery, preview, selection_md, picker]
            common = dict(outputs=stream_outputs, show_progress_on=[status], concurrency_id=GENERATE_CONCURRENCY,
                          concurrency_limit=max(1, len(svc.gpus())))
            inputs = [prompt, negative, aspect, auto_lora, mode, family, count, steps, cfg, sampler, seed, fast_drafts]
            quick = dict(trigger_mode="multiple", show_progress="hidden", concurrency_limit=None)
            # a last render from the server's state, in case a click landed between the stream's
            # final yield being computed and delivered
            settle = dict(fn=self.review, inputs=[batch_state], outputs=[gallery, selection_md], **quick)
            # Stop is enabled in the page the moment a batch starts, by a listener registered before
            # the stream's: the page runs a trigger's listeners one after the other, each to its end.
            # When a stream ends or another batch is opened, `stop_state` leaves it enabled only
            # if that batch still runs.
            for started in (generate_btn.click, prompt.submit, refine_btn.click):
                started(None, outputs=[stop_btn], js="() => ({__type__: 'update', interactive: true})",
                        api_visibility="private", **quick)
            stop_state = dict(fn=self.stop_button, inputs=[batch_state], outputs=[stop_btn], api_visibility="private",
                              **quick)
            generate_btn.click(self.generate, inputs=inputs, **common).then(**settle).then(**stop_state)
            prompt.submit(self.generate, inputs=inputs, **common).then(**settle).then(**stop_state)
            refine_btn.click(self.refine, inputs=[batch_state], **common).then(**settle).then(**stop_state)
            picker.input(self.open_batch, inputs=[picker], outputs=stream_outputs, **quick).then(**stop_state)
            reject_btn.click(self.reject_all, inputs=[batch_state], outputs=[gallery, selection_md], **quick)
            stop_btn.click(self.stop, inputs=[batch_state], outputs=None, **quick)
            veto_pick.focus(self.veto_choices, inputs=[batch_state], outputs=[veto_pick], **quick)
            veto_pick.input(self.veto, inputs=[veto_pick], outputs=[veto_md], **quick)
            chips_out = dict(fn=self.negative_chips, inputs=[prompt, negative, family],
                             outputs=[negative_chips, negative_dismiss], **quick)
            prompt.blur(**chips_out)
            negative.blur(**chips_out)
            negative_chips.input(self.add_negative, inputs=[negative_chips, negative], outputs=[negative],
                                 **quick).then(**chips_out)
            negative_dismiss.input(self.dismiss_negative, inputs=[negative_dismiss], outputs=None,
                                   **quick).then(**chips_out)
            batch_actions.wire(batch_state, status, stream_outputs, common, [prompt, negative, family, aspect, mode],
                               settle)
            HistoryPanel(self).build(stream_outputs)
            ComparePanel(self).build(batch_state, settle)

            with gr.Tab("Stats", id="stats") as stats_tab:
                with gr.Row():
                    scope = gr.Radio(["Me", "All users"], value="Me", label="Whose preferences")
                    refresh = gr.Button("Refresh", elem_id="dg-stats-refresh")
                stats_summary = gr.HTML(elem_id="dg-stats")
                ckpt_table = gr.Dataframe(label="Checkpoints: selection rate", elem_id="dg-ckpt-table")
                ckpt_plot = gr.BarPlot(x="checkpoint", y="selection_rate", label="Selection rate per checkpoint",
                                       y_lim=[0, 1])
                kw_filter = gr.Textbox(label="Filter keywords", placeholder="e.g. portrait")
                kw_table = gr.Dataframe(label="Keyword × checkpoint")
                lora_table = gr.Dataframe(label="LoRAs: selection rate")
                combo_table = gr.Dataframe(label="LoRA combinations (per family, with strengths): selection rate",
                                           elem_id="dg-combo-table")
                cfg_table = gr.Dataframe(label="Settings (checkpoint × CFG): selection rate", elem_id="dg-cfg-table")
                conf_plot = gr.LinePlot(x="batch", y="confidence", label="Confidence over time", y_lim=[0, 1],
                                        x_title="batch (1 = your first)", x_axis_format="d",
                                        tooltip=["batch", "date", "confidence", "strategy"], elem_id="dg-conf-plot")
                with gr.Row():
                    fmt = gr.Radio(["csv", "parquet"], value="csv", label="Export format")
                    export_btn = gr.Button("Export my preferences")
                    export_file = gr.File(label="Exported file")
                with gr.Row():
                    import_file = gr.File(label="Import preferences (.csv / .parquet)", type="filepath")
                    import_btn = gr.Button("Import")
                    import_md = gr.HTML()
                reset_events = ResetMonitorPanel(svc).build(stats_tab)  # reset / undo, monitoring SQL, snapshot
                with gr.Row(equal_height=True):  # sharing with the crowd
                    share_box = gr.Checkbox(label="Share my preferences (pooled with other users' as a starting "
                                                  "point for newcomers; never shown as yours)",
                                            elem_id="dg-share", interactive=False)
                    share_md = gr.HTML(elem_id="dg-share-status")
            stats_out = [stats_summary, ckpt_table, ckpt_plot, kw_table, lora_table, combo_table, cfg_table, conf_plot]
            stats_kw = dict(inputs=[scope, kw_filter], outputs=stats_out, concurrency_limit=None,
                            trigger_mode="always_last")
            stats_tab.select(self.stats, **stats_kw)
            refresh.click(self.stats, **stats_kw)
            kw_filter.change(self.stats, **stats_kw)
            scope.change(self.stats, **stats_kw)
            for event in reset_events:  # the tables show what a reset or an undo left
                event.then(self.stats, **stats_kw)
            export_btn.click(self.export, inputs=[fmt], outputs=[export_file], concurrency_limit=None)
            import_btn.click(self.import_, inputs=[import_file], outputs=[import_md], concurrency_limit=None)
            stats_tab.select(self.sharing, outputs=[share_box, share_md], concurrency_limit=None)
            share_box.input(self.set_sharing, inputs=[share_box], outputs=[share_box, share_md], concurrency_limit=None)

            with gr.Tab("GPUs", id="gpus") as gpus_tab:
                gpu_table = gr.Dataframe(label="ComfyUI servers", elem_id="dg-gpu-table")
                gpu_ckpt = gr.Dataframe(label="Checkpoint stats")
                timer = gr.Timer(3.0, active=False)
            gpu_kw = dict(outputs=[gpu_table, gpu_ckpt], concurrency_limit=None, show_progress="hidden")
            gpus_tab.select(self.gpus, **gpu_kw)
            # the GPUs table refreshes itself only while it is visible
            for tab, visible in ((generate_tab, False), (stats_tab, False), (gpus_tab, True)):
                tab.select(lambda on=visible: gr.Timer(active=on), outputs=[timer], show_progress="hidden")
            timer.tick(self.gpus, **gpu_kw)
        return demo


def _rates_frame(totals: dict[str, dict], label: str) -> pd.DataFrame:
    rows = [{label: name.removesuffix(".safetensors"), **vals} for name, vals in totals.items()]
    frame = pd.DataFrame(rows, columns=[label, "selected", "total", "selection_rate"])
    frame = frame.astype({"selected": int, "total": int, "selection_rate": float}).round({"selection_rate": 3})
    return frame.sort_values("selection_rate", ascending=False)


def _sharing_out(state: SharingState) -> tuple[Any, str]:
    """The sharing checkbox and its status line; the choice can be made while the deployment does not
    pool (it is kept for when it does)."""
    if not state.enabled:
        note = ("This server does not pool preferences (started without --share-preferences); your choice is "
                "kept for when it does.")
    elif state.share:
        note = "Your preferences join the crowd pool: other users' first grids start from everyone's picks."
    else:
        note = "Your preferences stay yours alone. Your own first grids still start from the crowd's picks."
    return gr.update(value=state.share, interactive=True), f"<span id='dg-share-note'>{html.escape(note)}</span>"


def build_ui(service: DraftGridService) -> tuple[gr.Blocks, str, str]:
    """The Blocks app and the CSS and page JavaScript to pass to `launch` (Gradio 6 takes them at
    launch)."""
    return DraftGridUI(service).build(), CSS + TRIAGE_CSS, page_js()
