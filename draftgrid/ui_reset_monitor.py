"""The Stats tab's reset and monitoring controls: reset what was learnt for a keyword (or
everything) and undo it, a read-only SQL panel over the monitoring views, a snapshot download.

The same service calls, models and messages as the REST routes (`api_reset_monitor.py`).
"""

from __future__ import annotations

import html
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from pydantic import ValidationError

from draftgrid.errors import ServiceError
from draftgrid.schemas import MonitoringQueryRequest, ResetRequest, readable_errors
from draftgrid.service import DraftGridService
from draftgrid.ui_common import error_html, user_of

EVERYTHING = ""  # the dropdown's value for "every keyword" (no keyword is empty)
EXAMPLE_QUERY = """-- one SELECT over generation_logs, image_logs, feedback_logs, reset_logs, preferences
SELECT session_id, AVG(confidence) AS avg_confidence, count(*) AS batches
FROM generation_logs GROUP BY session_id ORDER BY batches DESC"""


def _message(exc: ServiceError | ValidationError) -> str:
    return readable_errors(exc) if isinstance(exc, ValidationError) else str(exc)


class ResetMonitorPanel:
    """Handlers and layout; `build` is called inside the Stats tab."""

    def __init__(self, service: DraftGridService) -> None:
        self.service = service

    # ---------------------------------------------------------------- reset and undo
    def keyword_choices(self, request: gr.Request) -> dict[str, Any]:
        frame = self.service.keyword_table(user_of(request))
        pairs = dict(zip(frame["keyword"], frame["label"])) if len(frame) else {}
        choices = [("Everything (all keywords)", EVERYTHING)] + [(label, kw) for kw, label in sorted(pairs.items())]
        return gr.update(choices=choices, value=EVERYTHING)

    def reset(self, keyword: str | None, request: gr.Request) -> tuple[Any, ...]:
        """(status, undo button, last reset id, keyword choices)."""
        user = user_of(request)
        try:
            result = self.service.reset_preferences(user, ResetRequest(keyword=keyword or None))
        except (ServiceError, ValidationError) as exc:
            return error_html(_message(exc)), gr.skip(), gr.skip(), gr.skip()
        what = f"'{html.escape(result.keyword)}'" if result.keyword else "every keyword"
        if result.reset_id is None:  # an earlier reset stays undoable
            return (f"<span id='dg-reset-done'>Nothing learnt for {what} yet: nothing to reset.</span>",
                    gr.skip(), gr.skip(), gr.skip())
        return (f"<span id='dg-reset-done'>Reset {what}: {result.rows} preference rows forgotten "
                f"(reset {result.reset_id}).</span>", gr.update(visible=True), result.reset_id,
                self.keyword_choices(request))

    def undo(self, reset_id: int | None, request: gr.Request) -> tuple[Any, ...]:
        """(status, undo button, last reset id, keyword choices)."""
        if reset_id is None:
            return "Nothing to undo.", gr.update(visible=False), None, gr.skip()
        try:
            result = self.service.undo_reset(user_of(request), str(reset_id))
        except ServiceError as exc:
            return error_html(str(exc)), gr.update(visible=False), None, gr.skip()
        what = f"'{html.escape(result.keyword)}'" if result.keyword else "every keyword"
        return (f"<span id='dg-reset-done'>Undone: what was learnt for {what} is back "
                f"({result.rows} rows).</span>", gr.update(visible=False), None, self.keyword_choices(request))

    # ---------------------------------------------------------------- monitoring
    def run_query(self, sql: str, request: gr.Request) -> tuple[str, pd.DataFrame]:
        try:
            answer = self.service.monitoring_query(user_of(request), MonitoringQueryRequest(sql=sql or ""))
        except (ServiceError, ValidationError) as exc:
            return error_html(_message(exc)), pd.DataFrame()
        note = f" (first {answer['max_rows']} shown)" if answer["truncated"] else ""
        status = (f"<span id='dg-query-done'>{len(answer['rows'])} rows{note} · {answer['seconds']:.3f} s · "
                  f"{answer['scope']}</span>")
        return status, pd.DataFrame(answer["rows"], columns=answer["columns"])

    def snapshot(self, request: gr.Request) -> str:
        out = Path(tempfile.mkdtemp(prefix="draftgrid-snapshot-")) / "draftgrid-snapshot.zip"
        out.write_bytes(self.service.monitoring_snapshot(user_of(request)))
        return str(out)

    # ---------------------------------------------------------------- layout
    def build(self, stats_tab: gr.Tab) -> list[Any]:
        """The controls, inside the Stats tab; returns the reset and undo events, after which the
        tab's tables should be shown again."""
        quick = dict(concurrency_limit=None)
        with gr.Accordion("Reset what was learnt", open=False):
            with gr.Row():
                keyword = gr.Dropdown(choices=[("Everything (all keywords)", EVERYTHING)], value=EVERYTHING,
                                      label="Keyword", elem_id="dg-reset-keyword")
                reset_btn = gr.Button("Reset", variant="stop", elem_id="dg-reset")
                undo_btn = gr.Button("Undo reset", visible=False, elem_id="dg-undo-reset")
            reset_md = gr.HTML(elem_id="dg-reset-status")
            last_reset = gr.State(None)
        with gr.Accordion("Monitoring: read-only SQL and snapshot", open=False):
            sql = gr.Code(value=EXAMPLE_QUERY, language="sql", label="One SELECT over the monitoring views",
                          elem_id="dg-sql", interactive=True)
            with gr.Row():
                run_btn = gr.Button("Run query", elem_id="dg-run-query")
                snapshot_btn = gr.Button("Download snapshot (Parquet)", elem_id="dg-snapshot")
            query_md = gr.HTML(elem_id="dg-query-status")
            query_table = gr.Dataframe(label="Result", elem_id="dg-query-table")
            snapshot_file = gr.File(label="Snapshot (zip of Parquet files)", elem_id="dg-snapshot-file")
        stats_tab.select(self.keyword_choices, outputs=[keyword], **quick)
        outputs = [reset_md, undo_btn, last_reset, keyword]
        events = [reset_btn.click(self.reset, inputs=[keyword], outputs=outputs, **quick),
                  undo_btn.click(self.undo, inputs=[last_reset], outputs=outputs, **quick)]
        run_btn.click(self.run_query, inputs=[sql], outputs=[query_md, query_table], **quick)
        snapshot_btn.click(self.snapshot, outputs=[snapshot_file], **quick)
        return events
