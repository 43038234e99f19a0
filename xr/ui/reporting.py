"""The radiologist's workspace: worklist, the images with window/level and zoom, the draft as Findings and
Impression with a sentence-by-sentence accept/reject, the diff against the draft, sign-off, and the
approved report out as DICOM SR, FHIR or text."""
from __future__ import annotations

import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

import gradio as gr
from gradio.utils import get_upload_folder
from PIL import Image

from xr import store
from xr.refine.refiner import REFINE_BY_DEFAULT
from xr.report import apply_choices, draft_sentences, join_sections, literal_markdown, sentences, split_sections
from xr.ui.common import guarded, username
from xr.ui.viewer import Viewer, stored_views
from xr.workstation import Workstation

EXPORTS = {"DICOM SR": "sr", "FHIR R4 (JSON)": "fhir", "Plain text": "text"}
WORKLIST_COLUMNS = ["id", "status", "views", "indication", "updated"]


def worklist_rows(ws: Workstation, status: str, search: str) -> list[list]:
    rows = store.worklist(ws.settings, "" if status == "all" else status, search)
    return [[r[c] for c in WORKLIST_COLUMNS] for r in rows]


def open_study(ws: Workstation, viewer: Viewer, study_id: int, notes: str = "") -> tuple:
    """Everything the workspace shows of one study, in the order of `Reporting.study_outputs`."""
    v = store.study_view(ws.settings, study_id)
    d = v["draft"]
    views = stored_views(v)
    findings, impression = split_sections(v["text"])
    choices = draft_sentences(d["text"]) if d else []
    current = set(choices) - set(_rejected(choices, findings, impression))
    header = f"### Study #{study_id} · {v['status']}"
    if v["indication"]:
        header += f" · indication: {literal_markdown(v['indication'])}"
    if d:
        header += f"\nDrafted by {d['model']} {d['model_version']}."
    if v["approval"]:
        a = v["approval"]
        header += (f" Signed off by **{literal_markdown(a['by'])}** at {a['at']} UTC"
                   f"{' (amended)' if a['amendment'] else ''}.")
    if notes:
        header += " " + notes
    similar = [(Image.open(ws.index.library.directory / c["thumb"]),
                f"{c['case_id']} · {c['similarity']:.2f} · {c['report'][:160]}")
               for c in (d["similar_cases"] if d else []) if c.get("thumb")]
    similar_md = "\n".join(f"- **{literal_markdown(c['case_id'])}** ({literal_markdown(c['via'])}, "
                           f"{c['similarity']:.2f}; shares: "
                           f"{literal_markdown(', '.join(c['shared_findings'])) or 'none'}): "
                           f"{literal_markdown(c['report'])}"
                           for c in (d["similar_cases"] if d else []))
    return (study_id, d["text"] if d else "", header, *viewer.show(views), findings, impression,
            gr.update(choices=choices, value=[c for c in choices if c in current]),
            d["findings"] if d else {}, similar, similar_md, store.history(ws.settings, study_id),
            store.diff_text(d["text"], join_sections(findings, impression)) if d else "", False)


def _rejected(choices: list[str], findings: str, impression: str) -> list[str]:
    """Draft sentences no longer in the current text: shown unticked when a study is reopened."""
    have = {"F: " + s for s in sentences(findings)} | {"I: " + s for s in sentences(impression)}
    return [c for c in choices if c not in have]


class Reporting:
    def __init__(self, ws: Workstation) -> None:
        self.ws = ws
        with gr.Tab("Reporting", id="reporting", visible=False) as self.tab:
            self.study_id, self.draft_text = gr.State(None), gr.State("")
            with gr.Row():
                with gr.Column(scale=1, min_width=340):
                    gr.Markdown("### Worklist")
                    with gr.Row():
                        self.status_filter = gr.Radio(["all", "pending", "drafted", "approved"], value="all",
                                                      label="Status", scale=3)
                        self.refresh = gr.Button("Refresh", size="sm", scale=1)
                    self.search = gr.Textbox(label="Search", placeholder="indication or report text; #12 opens study 12")
                    self.table = gr.Dataframe(headers=WORKLIST_COLUMNS, interactive=False, max_height=320,
                                              label="Click a study to open it", elem_id="worklist")
                    gr.Markdown("### New study")
                    self.files = gr.File(label="PNG, JPEG or DICOM images, or a zip", file_count="multiple",
                                         elem_id="study-files")
                    self.indication = gr.Textbox(label="Indication (optional)", placeholder="e.g. cough, fever")
                    self.refine_cb = gr.Checkbox(label="Refine with the small LLM", value=REFINE_BY_DEFAULT,
                                                 info="Shown beside the draft, not put in the report until you ask")
                    with gr.Row():
                        self.draft_btn = gr.Button("Draft report", variant="primary")
                        self.add_btn = gr.Button("Add to worklist")
                    self.findings = gr.Label(label="Finding probabilities", num_top_classes=8)
                with gr.Column(scale=2):
                    self.header = gr.Markdown("### No study open\nPick one from the worklist or upload a new one.")
                    self.viewer = Viewer()
            with gr.Row():
                with gr.Column():
                    self.findings_box = gr.Textbox(label="Findings", lines=6, interactive=True)
                    self.impression_box = gr.Textbox(label="Impression", lines=3, interactive=True)
                    self.sentences = gr.CheckboxGroup([], label="Draft sentences (untick to take one out of the report, "
                                                                "tick to put it back)", elem_id="draft-sentences")
                    self.signoff = gr.Checkbox(label="I have reviewed the images and this report, and sign it off",
                                               value=False)
                    with gr.Row():
                        self.save_btn = gr.Button("Save draft")
                        self.approve_btn = gr.Button("Approve and sign", variant="primary")
                        self.redraft_btn = gr.Button("Draft this study")
                    self.status = gr.Markdown()
                with gr.Column():
                    self.diff = gr.Code(label="Changes against the draft", language=None, lines=10)
                    with gr.Row():
                        self.export_fmt = gr.Radio(list(EXPORTS), value="DICOM SR", label="Export the approved report")
                        self.export_btn = gr.Button("Export", size="sm")
                    self.export_file = gr.File(label="Exported report", interactive=False)
            with gr.Accordion("Refined by the small LLM", open=False) as self.refined_box:
                with gr.Row():
                    self.refined = gr.Textbox(label="Refined text", lines=8, interactive=False)
                    self.refined_diff = gr.Code(label="Draft -> refined (diff)", language=None, lines=8)
                self.refined_flags = gr.Markdown()
                self.use_refined_btn = gr.Button("Use refined text")
            with gr.Accordion("Similar cases", open=True):
                self.similar = gr.Gallery(label="Nearest library images", columns=5, height=240, object_fit="contain")
                self.similar_text = gr.Markdown()
            with gr.Accordion("History of this study", open=False):
                self.history = gr.JSON(label="Draft, edits and approvals")
        self._wire()

    @property
    def study_outputs(self) -> list:
        return [self.study_id, self.draft_text, self.header, *self.viewer.outputs, self.findings_box,
                self.impression_box, self.sentences, self.findings, self.similar, self.similar_text, self.history,
                self.diff, self.signoff]

    def _wire(self) -> None:
        ws, private = self.ws, {"api_visibility": "private"}
        text = [self.findings_box, self.impression_box]

        @guarded
        def load(status, search, request: gr.Request):
            ws.actor(username(request), "worklist")
            return worklist_rows(ws, status, search)

        @guarded
        def pick(evt: gr.SelectData, request: gr.Request):
            ws.actor(username(request), "worklist")
            return open_study(ws, self.viewer, int(evt.row_value[0]))

        @guarded
        def ui_draft(files, indication, request: gr.Request, progress=gr.Progress()):
            with uploaded(files) as paths:  # deleted even when the caller may not draft
                actor = ws.actor(username(request), "draft")
                r = ws.draft(paths, indication or "", actor, progress=lambda f, desc: progress(f, desc=desc))
            return open_study(ws, self.viewer, r.study_id, f"Drafted in {r.draft.timings['total_ms']:.0f} ms. "
                              + " ".join(r.draft.notes))

        @guarded
        def redraft(study_id, request: gr.Request, progress=gr.Progress()):
            actor = ws.actor(username(request), "draft")
            if not study_id:
                raise store.StoreError("open a study first")
            r = ws.draft_stored(int(study_id), actor, progress=lambda f, desc: progress(f, desc=desc))
            return open_study(ws, self.viewer, r.study_id, f"Drafted in {r.draft.timings['total_ms']:.0f} ms.")

        @guarded
        def add(files, indication, status, search, request: gr.Request):
            with uploaded(files) as paths:
                actor = ws.actor(username(request), "draft")
                sid = ws.add_study(paths, indication or "", actor)
            return f"Study #{sid} is on the worklist.", worklist_rows(ws, status, search)

        @guarded
        def ui_refine(study_id, enabled, request: gr.Request):
            ws.actor(username(request), "refine")  # first, like every handler: a refusal whatever the inputs
            if not (enabled and study_id):
                return gr.update(), gr.update(), gr.update(), gr.update()
            r = ws.refine(int(study_id)).to_json()
            flags = "\n".join(f"- ⚠ {f}" for f in r["flags"]) or "No contradiction with the finding probabilities."
            return (r["text"], r["diff"] or "(no change)",
                    f"**Checks** ({r['model']}, {r['timings']['refine_ms']:.0f} ms):\n{flags}", gr.update(open=True))

        @guarded
        def save(study_id, findings, impression, request: gr.Request):
            actor = ws.actor(username(request), "edit")
            rev = store.save_revision(ws.settings, need(study_id), join_sections(findings, impression), actor)
            return ("No changes to save." if rev is None else f"Saved revision #{rev}."), store.history(ws.settings, study_id)

        @guarded
        def ui_approve(study_id, findings, impression, signed, status, search, request: gr.Request):
            actor = ws.actor(username(request), "approve")
            if not signed:
                raise store.StoreError("tick the sign-off box to approve")
            approval = ws.approve(need(study_id), join_sections(findings, impression), actor)
            return (*open_study(ws, self.viewer, study_id, f"Approved (approval #{approval})."),
                    worklist_rows(ws, status, search))

        @guarded
        def export(study_id, fmt, request: gr.Request):
            actor = ws.actor(username(request), "export_report")
            return str(store.export_report(ws.settings, need(study_id), EXPORTS[fmt],
                                           tempfile.mkdtemp(prefix="xr-export-"), actor))

        def check_signoff(signed):
            """Before the approval event, so a refusal does not cover the editor with error overlays."""
            if not signed:
                raise gr.Error("tick the sign-off box to approve", print_exception=False)

        def choose(findings, impression, accepted, draft_text):
            return apply_choices(findings, impression, draft_sentences(draft_text), accepted)

        def diff(draft_text, findings, impression):
            return store.diff_text(draft_text, join_sections(findings, impression)) if draft_text else ""

        filters = [self.status_filter, self.search]
        self.refresh.click(load, filters, self.table, **private)
        self.status_filter.change(load, filters, self.table, **private)
        self.search.submit(load, filters, self.table, **private)
        self.table.select(pick, None, self.study_outputs, **private)
        refine_out = [self.refined, self.refined_diff, self.refined_flags, self.refined_box]
        self.draft_btn.click(ui_draft, [self.files, self.indication], self.study_outputs, **private).then(
            ui_refine, [self.study_id, self.refine_cb], refine_out, **private).then(load, filters, self.table, **private)
        self.redraft_btn.click(redraft, [self.study_id], self.study_outputs, **private).then(
            load, filters, self.table, **private)
        self.add_btn.click(add, [self.files, self.indication, *filters], [self.header, self.table], **private)
        self.use_refined_btn.click(lambda r, f, i: split_sections(r) if r else (f, i), [self.refined, *text], text,
                                   **private)
        self.sentences.input(choose, [*text, self.sentences, self.draft_text], text, **private)
        for box in text:
            box.change(diff, [self.draft_text, *text], self.diff, **private)
        self.save_btn.click(save, [self.study_id, *text], [self.status, self.history], **private)
        self.approve_btn.click(check_signoff, self.signoff, None, **private).success(ui_approve, [self.study_id, *text, self.signoff, *filters],
                               [*self.study_outputs, self.table], **private)
        self.export_btn.click(export, [self.study_id, self.export_fmt], self.export_file, **private)


@contextmanager
def uploaded(files) -> Iterator[list[str]]:
    """The uploads' paths, each deleted once the action is over, whatever its outcome: Gradio keeps an
    upload under the name the user gave it, and a DICOM's name and header may identify the patient. What
    stays is what the store keeps: pixels under their content hash, no header."""
    if not files:
        raise store.StoreError("upload one or more images (PNG, JPEG, DICOM) or a zip of them")
    paths = [f if isinstance(f, str) else f.name for f in (files if isinstance(files, list) else [files])]
    cache = Path(get_upload_folder()).resolve()
    ours = [p for p in (Path(p).resolve() for p in paths) if cache in p.parents]  # never the user's own files
    if not all(p.exists() for p in ours):
        raise store.StoreError("the uploads were deleted after the last action (they may identify the patient): "
                               "upload the files again")
    try:
        yield paths
    finally:
        for path in ours:
            path.unlink(missing_ok=True)
            with suppress(OSError):  # the folder Gradio made for it, once empty
                path.parent.rmdir()


def need(study_id) -> int:
    if not study_id:
        raise store.StoreError("open or draft a study first")
    return int(study_id)
