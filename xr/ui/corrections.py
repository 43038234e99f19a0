"""The annotator's workspace: a queue of drafts to correct, one at a time; each correction is a revision
with reason tags (they travel into the fine-tuning export), and the queue shows how far along it is."""
from __future__ import annotations

import gradio as gr

from xr import store
from xr.report import literal_markdown
from xr.ui.common import PRIVATE, ScreenError, refusing, username
from xr.ui.tempfiles import export_folder
from xr.ui.viewer import Viewer, stored_views
from xr.workstation import Desk, Workstation

TAGS = [t for t in store.REASON_TAGS if t != "no correction"]


def progress_html(q: store.CorrectionsQueue) -> str:
    pct = 100 * q.done / q.total if q.total else 100
    return (f"<div><b>{q.done} of {q.total}</b> drafts corrected"
            f"<progress max='100' value='{pct:.0f}' style='width:100%'></progress></div>")


class Corrections:
    def __init__(self, ws: Workstation) -> None:
        self.ws = ws
        with gr.Tab("Corrections", id="corrections", visible=False) as self.tab:
            self.study_id = gr.State(None)
            self.progress = gr.HTML(elem_id="corrections-progress")
            with gr.Row():
                with gr.Column(scale=2):
                    self.header = gr.Markdown()
                    self.viewer = Viewer(label="Images of the draft to correct")
                with gr.Column(scale=2):
                    self.draft = gr.Textbox(label="The model's draft", lines=8, interactive=False)
                    self.text = gr.Textbox(label="Corrected report", lines=8, interactive=True)
                    self.tags = gr.CheckboxGroup(TAGS, label="Why it changed (one or more)")
                    with gr.Row():
                        self.save_btn = gr.Button("Save correction and next", variant="primary")
                        self.fine_btn = gr.Button("Draft is right, next")
                        self.skip_btn = gr.Button("Skip")
                    self.status = gr.Markdown()
                    with gr.Row():
                        self.export_btn = gr.Button("Export fine-tuning data (approved and corrected studies)", size="sm")
                        self.export_file = gr.File(label="edits.jsonl", interactive=False)
        self._wire()

    def _show(self, desk: Desk, note: str = "", after: int | None = None) -> tuple:
        """The queue's next study (the first, or the first after `after`), with the queue's progress."""
        q = desk.corrections()
        study_id = q.next if after is None else desk.corrections(after).next
        if study_id is None:
            return (None, progress_html(q), "### Nothing left to correct" + (f"\n{note}" if note else ""),
                    *self.viewer.show([]), "", "", [], note)
        v = desk.to_correct(study_id)
        d = v.draft
        assert d is not None  # the queue holds drafted studies only
        header = f"### Study #{study_id}" + (f" · indication: {literal_markdown(v.indication)}"
                                             if v.indication else "")
        return (study_id, progress_html(q), header, *self.viewer.show(stored_views(v)),
                d.report, v.text, [], note)

    @property
    def outputs(self) -> list:
        return [self.study_id, self.progress, self.header, *self.viewer.outputs, self.draft, self.text, self.tags,
                self.status]

    def _wire(self) -> None:
        ws = self.ws

        @refusing()
        def start(request: gr.Request):
            desk = ws.desk(username(request))
            return self._show(desk)

        @refusing()
        def save(study_id, text, tags, request: gr.Request):
            desk = ws.desk(username(request))
            desk.may("correct")
            if not study_id:
                raise ScreenError("nothing to correct")
            if not tags:
                raise ScreenError("tick at least one reason for the correction")
            desk.correct(int(study_id), text, tags)
            return self._show(desk, f"Saved the correction of study #{study_id}.")

        @refusing()
        def fine(study_id, draft, request: gr.Request):
            desk = ws.desk(username(request))
            desk.may("correct")
            if not study_id:
                raise ScreenError("nothing to correct")
            desk.correct(int(study_id), draft, ["no correction"])
            return self._show(desk, f"Study #{study_id} marked as correct.")

        @refusing()
        def skip(study_id, request: gr.Request):
            desk = ws.desk(username(request))
            return self._show(desk, f"Skipped study #{study_id}." if study_id else "", after=study_id)

        @refusing()
        def export(request: gr.Request):
            with export_folder(ws.settings) as folder:
                n = ws.desk(username(request)).export_edits(folder / "edits.jsonl")
            return str(folder / "edits.jsonl"), f"Exported {n} studies."

        self.export_btn.click(export, None, [self.export_file, self.status], **PRIVATE)
        self.tab.select(start, None, self.outputs, **PRIVATE)
        self.save_btn.click(save, [self.study_id, self.text, self.tags], self.outputs, **PRIVATE)
        self.fine_btn.click(fine, [self.study_id, self.draft], self.outputs, **PRIVATE)
        self.skip_btn.click(skip, [self.study_id], self.outputs, **PRIVATE)
