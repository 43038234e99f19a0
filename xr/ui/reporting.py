"""The radiologist's workspace: worklist, the views side by side with window/level and zoom, the draft as
Findings and Impression with a sentence-by-sentence accept/reject, the diff against the draft, sign-off,
and the approved report out as DICOM SR, FHIR or text. The editor's text is the one truth: the sentence
checkboxes show what it holds, and what is signed is what is on screen."""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder
from PIL import Image

from xr import access, store
from xr.decode.wording import sentence_labels
from xr.evaluate.labeler import POSITIVE, UNCERTAIN, label_report
from xr.export.approved import signer_name
from xr.export.registry import FORMATS
from xr.refine.refiner import REFINE_BY_DEFAULT
from xr.report import (
    diff_text,
    draft_sentences,
    join_sections,
    literal_markdown,
    present_choices,
    sentences,
    split_sections,
    toggle_choice,
)
from xr.ui.common import INGEST, PRIVATE, refusing, username
from xr.ui.panel import panel_markdown
from xr.ui.tempfiles import export_folder
from xr.ui.viewer import Viewer, stored_views
from xr.workstation import Workstation

WORKLIST_COLUMNS = ["id", "status", "views", "indication", "updated"]
HISTORY_COLUMNS = ["when (UTC)", "event", "by", "text"]
STUDY_NUMBER = re.compile(r"^#(\d+)$")


def worklist_rows(ws: Workstation, status: str, search: str) -> list[list]:
    rows = store.worklist(ws.settings, "" if status == "all" else status, search)
    return [[r[c] for c in WORKLIST_COLUMNS] for r in rows]


def history_rows(ws: Workstation, study_id: int) -> list[list]:
    return [[h.at.replace("T", " "), h.event, h.by, h.text] for h in store.history(ws.settings, study_id)]


def text_says(findings: str, impression: str) -> str:
    """What the report on screen states and hedges, as the labeler reads it (the finding panel beside it
    has the probabilities): each hedged sentence is listed, marked, for the radiologist to confirm or remove."""
    text = join_sections(findings, impression)
    if not (findings or impression).strip():
        return ""
    labels = label_report(text)
    stated = [f for f, v in labels.items() if v == POSITIVE and f != "No Finding"]
    lines = [f"**The report states:** {', '.join(stated) or 'no finding'}."]
    hedged = [s for s in sentences(findings) + sentences(impression) if UNCERTAIN in sentence_labels(s).values()]
    lines += [f"⚠ **Hedged, check it:** *{literal_markdown(s)}*" for s in dict.fromkeys(hedged)]
    return "\n\n".join(lines)


def open_study(ws: Workstation, viewer: Viewer, study_id: int, notice: str = "") -> tuple:
    """Everything the workspace shows of one study, in the order of `Reporting.study_outputs`: every part of
    the screen (header, films, panel, report, export, refined text) is this study's. A signed report is shown
    read-only until *Amend* is pressed. `notice`: one line of what just happened, under the header."""
    v = store.study_view(ws.settings, study_id)
    d = v.draft
    findings, impression = split_sections(v.text)
    choices = draft_sentences(d.report) if d else []
    header = f"### Study #{study_id} · {v.status}"
    if v.indication:
        header += f" · indication: {literal_markdown(v.indication)}"
    if d:
        header += f"\nDrafted by {d.model} {d.model_version}."
    if v.approval:
        a = v.approval
        header += (f" Signed off by **{literal_markdown(signer_name(a.by, ws.settings))}** at {a.at.replace('T', ' ')} UTC"
                   f"{' (amended)' if a.amendment else ''}; press *Amend* to change it.")
    if notice:
        header += "\n\n" + literal_markdown(notice)
    similar = [(Image.open(ws.index.library.directory / c.thumb), f"{c.case_id} · {c.similarity:.2f} · {c.report[:160]}")
               for c in (d.similar_cases if d else []) if c.thumb]
    similar_md = "\n".join(f"- **{literal_markdown(c.case_id)}** ({literal_markdown(c.via)}, {c.similarity:.2f}; shares: "
                           f"{literal_markdown(', '.join(c.shared_findings)) or 'none'}): {literal_markdown(c.report)}"
                           for c in (d.similar_cases if d else []))
    editable = v.approval is None
    notes = "\n".join(f"- {literal_markdown(n)}" for n in (d.notes if d else [])) or "*No notes were kept with this draft.*"
    return (study_id, d.report if d else "", v.text, header, *viewer.show(stored_views(v)),
            gr.update(value=findings, interactive=editable), gr.update(value=impression, interactive=editable),
            gr.update(choices=choices, value=present_choices(findings, impression, choices), interactive=editable),
            text_says(findings, impression), panel_markdown(d.findings, d.statements) if d else panel_markdown({}, None),
            similar, similar_md, history_rows(ws, study_id),
            diff_text(d.report, join_sections(findings, impression)) if d else "",
            gr.update(value=False, interactive=editable), "", gr.update(visible=not editable),
            gr.update(interactive=editable), gr.update(visible=False), notes, None, "", "", "")


class Reporting:
    def __init__(self, ws: Workstation) -> None:
        self.ws = ws
        with gr.Tab("Reporting", id="reporting", visible=False) as self.tab:
            self.study_id, self.draft_text, self.just_drafted = gr.State(None), gr.State(""), gr.State(None)
            self.seen = gr.State("")  # the stored text as this page last read or wrote it: saves and sign-offs are bound to it
            # As reading stations hang them: the films at the screen's height in the middle, the draft (report
            # editor, sign-off, finding panel) beside them on the right, new studies and the worklist on the left.
            with gr.Row(elem_classes="xr-reporting"):
                with gr.Column(scale=2, min_width=250):
                    gr.Markdown("### New study")
                    self.files = gr.File(label="PNG, JPEG or DICOM images, or a zip", file_count="multiple",
                                         elem_id="study-files", height=110)
                    self.indication = gr.Textbox(label="Indication (optional)", placeholder="e.g. cough, fever")
                    self.refine_cb = gr.Checkbox(label="Refine with the small LLM (experimental)", value=REFINE_BY_DEFAULT,
                                                 info="Shown beside the draft, not put in the report until you ask; a "
                                                      "rewrite that changes the findings is refused")
                    with gr.Row():
                        self.draft_btn = gr.Button("Draft report", variant="primary", elem_id="draft-btn")
                        self.add_btn = gr.Button("Add to worklist")
                    gr.Markdown("### Worklist")
                    with gr.Row():
                        self.status_filter = gr.Dropdown(["all", *[st.value for st in store.StudyStatus]], value="all",
                                                         label="Status", scale=3)
                        self.refresh = gr.Button("Refresh", size="sm", scale=1)
                    self.search = gr.Textbox(label="Search", placeholder="indication or report text; #12 opens study 12")
                    self.table = gr.Dataframe(headers=WORKLIST_COLUMNS, interactive=False, max_height=320,
                                              label="Click a study to open it (N / P: next / previous)",
                                              elem_id="worklist")
                    self.next_btn = gr.Button("next study", elem_classes=["xr-hidden", "xr-next-study"])
                    self.prev_btn = gr.Button("previous study", elem_classes=["xr-hidden", "xr-prev-study"])
                with gr.Column(scale=5):
                    self.viewer = Viewer()
                with gr.Column(scale=4, min_width=440, elem_id="draft-column"):
                    with gr.Row():
                        self.header = gr.Markdown("### No study open\nPick one from the worklist or upload a new one.",
                                                  elem_id="study-header")
                        self.redraft_btn = gr.Button("Draft this study again", size="sm", scale=0, min_width=180)
                    with gr.Row(visible=False, elem_id="redraft-confirm") as self.confirm_row:
                        gr.Markdown("**This study has edits.** A new draft replaces the text in the editor; your "
                                    "edited text is kept in the study's history.")
                        self.confirm_btn = gr.Button("Replace my edits with a new draft", variant="stop", size="sm")
                        self.keep_btn = gr.Button("Keep my edits", size="sm")
                    self.findings_box = gr.Textbox(label="Findings", lines=5, interactive=True)
                    self.impression_box = gr.Textbox(label="Impression", lines=2, interactive=True)
                    self.signoff = gr.Checkbox(label="I have reviewed the images and this report, and sign it off",
                                               value=False)
                    # with log-in on, signing asks for the password again: a session left open is not a signature
                    self.password = gr.Textbox(label="Your password, to sign", type="password", visible=ws.settings.auth,
                                               elem_id="signoff-password", max_lines=1)
                    with gr.Row():
                        self.save_btn = gr.Button("Save draft", size="sm")
                        self.amend_btn = gr.Button("Amend the signed report", visible=False, size="sm")
                        self.approve_btn = gr.Button("Approve and sign (Ctrl+Enter)", variant="primary",
                                                     elem_id="approve-btn", size="sm")
                    self.status = gr.Markdown(elem_id="reporting-status")
                    self.panel = gr.Markdown(panel_markdown({}, None), elem_id="finding-panel")
                    self.says = gr.Markdown(elem_id="text-says")
            with gr.Row():
                with gr.Column():
                    self.sentences = gr.CheckboxGroup([], label="Draft sentences (untick to take one out of the report, "
                                                                "tick to put it back)", elem_id="draft-sentences")
                with gr.Column():
                    self.diff = gr.Code(label="Changes against the draft", language=None, lines=6)
                    with gr.Row():
                        self.export_fmt = gr.Radio([(f.label, name) for name, f in FORMATS.items()], value="sr",
                                                   label="Export the approved report")
                        self.export_btn = gr.Button("Export", size="sm")
                    self.export_file = gr.File(label="Exported report", interactive=False, elem_id="export-file")
            with gr.Accordion("How this draft was made", open=False):
                self.notes = gr.Markdown(elem_id="draft-notes")
            with gr.Accordion("Refined by the small LLM", open=False) as self.refined_box:
                with gr.Row():
                    self.refined = gr.Textbox(label="Refined text", lines=8, interactive=False)
                    self.refined_diff = gr.Code(label="Draft -> refined (diff)", language=None, lines=8)
                self.refined_flags = gr.Markdown()
                self.use_refined_btn = gr.Button("Use refined text")
            with gr.Accordion("Similar cases", open=True):
                self.similar = gr.Gallery(label="Nearest library images", columns=6, height=300,
                                          object_fit="contain", allow_preview=False)
                self.similar_text = gr.Markdown()
            with gr.Accordion("History of this study", open=False):
                self.history = gr.Dataframe(headers=HISTORY_COLUMNS, interactive=False, wrap=True,
                                            label="Drafts, edits and approvals", elem_id="history")
        self._wire()

    @property
    def study_outputs(self) -> list:
        return [self.study_id, self.draft_text, self.seen, self.header, *self.viewer.outputs, self.findings_box,
                self.impression_box, self.sentences, self.says, self.panel, self.similar, self.similar_text, self.history,
                self.diff, self.signoff, self.status, self.amend_btn, self.approve_btn, self.confirm_row, self.notes,
                self.export_file, self.refined, self.refined_diff, self.refined_flags]

    def _wire(self) -> None:
        ws = self.ws
        text = [self.findings_box, self.impression_box]
        outputs = self.study_outputs
        skip_study = [gr.skip()] * len(outputs)

        @refusing()
        def load(status, search, request: gr.Request):
            ws.actor(username(request), "worklist")
            return worklist_rows(ws, status, search)

        @refusing()
        def find(status, search, request: gr.Request):
            """The search box: '#12' opens study 12 (and lists it); anything else filters the list."""
            ws.actor(username(request), "worklist")
            rows = worklist_rows(ws, status, search)
            number = STUDY_NUMBER.match((search or "").strip())
            if number and rows:
                return rows, *open_study(ws, self.viewer, int(number[1]))
            return rows, *skip_study

        @refusing()
        def pick(evt: gr.SelectData, request: gr.Request):
            ws.actor(username(request), "worklist")
            return open_study(ws, self.viewer, int(evt.row_value[0]))

        def stepper(step: int):
            @refusing()
            def step_study(status, search, study_id, request: gr.Request):
                """The next (or previous) study of the worklist as filtered, from the one open."""
                ws.actor(username(request), "worklist")
                ids = [r[0] for r in worklist_rows(ws, status, search)]
                if not ids:
                    raise store.StoreError("the worklist is empty")
                at = ids.index(study_id) + step if study_id in ids else 0
                return open_study(ws, self.viewer, ids[at % len(ids)])
            return step_study

        def consumed():  # a refused draft has deleted its uploads all the same: the box empties
            return (*skip_study, None, None)

        @refusing(consumed)
        def ui_draft(files, indication, request: gr.Request, progress=gr.Progress()):
            with uploaded(files) as paths:  # deleted even when the caller may not draft
                actor = ws.actor(username(request), "draft")
                try:
                    r = ws.draft(paths, indication or "", actor, progress=lambda f, desc: progress(f, desc=desc))
                except store.KnownStudy as known:  # these films are a study already: open it, change nothing
                    return (*open_study(ws, self.viewer, known.study_id, str(known).capitalize() + "."), None, None)
            assert r.study_id is not None  # drafted with an actor: stored
            said = "" if (r.draft.findings_text or r.draft.impression) else " " + r.draft.notes[0]  # why it is empty
            return (*open_study(ws, self.viewer, r.study_id, f"Drafted in {r.draft.timings['total_ms']:.0f} ms.{said}"),
                    r.study_id, None)

        @refusing()
        def redraft(study_id, findings, impression, request: gr.Request, progress=gr.Progress()):
            """Draft a stored study again; if its text was edited (saved or on screen), ask first."""
            actor = ws.actor(username(request), "draft")
            if not study_id:
                raise store.StoreError("open a study first")
            v = store.study_view(ws.settings, int(study_id))
            on_screen = join_sections(findings, impression)
            if v.draft and (v.text != v.draft.report or on_screen.strip() != v.draft.report.strip()):
                return tuple(gr.update(visible=True) if o is self.confirm_row else gr.skip() for o in outputs)
            return drafted_again(int(study_id), actor, progress)

        @refusing()
        def confirm_redraft(study_id, findings, impression, request: gr.Request, progress=gr.Progress()):
            """The edited text goes into the history as a revision, then the new draft replaces it."""
            actor = ws.actor(username(request), "draft")
            if not study_id:
                raise store.StoreError("open a study first")
            if join_sections(findings, impression).strip():
                store.save_revision(ws.settings, int(study_id), join_sections(findings, impression),
                                    ws.actor(username(request), "edit"))
            return drafted_again(int(study_id), actor, progress)

        def drafted_again(study_id: int, actor, progress) -> tuple:
            r = ws.draft_stored(study_id, actor, progress=lambda f, desc: progress(f, desc=desc))
            assert r.study_id is not None  # drafted with an actor: stored
            return open_study(ws, self.viewer, r.study_id, f"Drafted in {r.draft.timings['total_ms']:.0f} ms.")

        def keep_edits():
            return gr.update(visible=False)

        @refusing(lambda: (*skip_study, gr.skip(), None))
        def add(files, indication, status, search, request: gr.Request):
            """The study goes on the worklist and is opened, so the whole screen is the study the header names."""
            with uploaded(files) as paths:
                actor = ws.actor(username(request), "draft")
                try:
                    sid = ws.add_study(paths, indication or "", actor)
                    notice = f"Study #{sid} is on the worklist, not drafted yet."
                except store.KnownStudy as known:
                    sid, notice = known.study_id, str(known).capitalize() + "."
            return (*open_study(ws, self.viewer, sid, notice), worklist_rows(ws, status, search), None)

        @refusing()
        def refining(study_id, enabled, request: gr.Request):
            """Said at once: the refined text takes half a minute on a CPU, and arrives below."""
            ws.actor(username(request), "refine")
            if not (enabled and study_id):
                return gr.skip()
            return ("", "", f"*Refining the draft of study #{study_id} with the small LLM (about 30-50 s on a CPU)…*",
                    gr.update(open=True))

        @refusing()
        def ui_refine(study_id, enabled, shown, request: gr.Request):
            ws.actor(username(request), "refine")  # first, like every handler: a refusal whatever the inputs
            if not (enabled and study_id) or shown != study_id:  # another study is open now: not shown over it
                return gr.skip()
            r = ws.refine(int(study_id)).to_json()
            flags = "\n".join(f"- ⚠ {f}" for f in r["flags"]) or "No contradiction with the finding probabilities."
            return (r["text"], r["diff"] or "(no change)",
                    f"**Checks of the refined draft of study #{study_id}** ({r['model']}, "
                    f"{r['timings']['refine_ms']:.0f} ms):\n{flags}", gr.update(open=True))

        @refusing()
        def save(study_id, findings, impression, seen, request: gr.Request):
            actor = ws.actor(username(request), "edit")
            text = join_sections(findings, impression)
            rev = store.save_revision(ws.settings, need(study_id), text, actor, seen=seen)
            return ("No changes to save." if rev is None else "Saved your edits."), history_rows(ws, need(study_id)), text

        @refusing()
        def ui_approve(study_id, findings, impression, signed, password, seen, status, search, request: gr.Request):
            actor = ws.actor(username(request), "approve")
            if not signed:
                raise store.StoreError("tick the sign-off box to approve")
            access.reauthenticate(ws.settings, actor.name, password)
            approval = ws.approve(need(study_id), join_sections(findings, impression), actor, seen=seen)
            return (*open_study(ws, self.viewer, study_id, f"Approved (approval #{approval})."),
                    worklist_rows(ws, status, search), "")

        @refusing()
        def export(study_id, fmt, request: gr.Request):
            actor = ws.actor(username(request), "export_report")
            with export_folder(ws.settings) as folder:
                return str(store.export_report(ws.settings, need(study_id), fmt, folder, actor))

        def amend():
            """Unlock a signed report for an amendment (approving it again is the amendment)."""
            return (gr.update(interactive=True), gr.update(interactive=True), gr.update(interactive=True),
                    gr.update(interactive=True), gr.update(interactive=True), gr.update(visible=False))

        def choose(findings, impression, draft_text, evt: gr.SelectData):
            """One checkbox clicked: that sentence out of (or back into) the text, and nothing else."""
            choices = draft_sentences(draft_text)
            f, i = toggle_choice(findings, impression, choices, evt.value, evt.selected)
            return f, i, gr.update(value=present_choices(f, i, choices))

        def follow(draft_text, findings, impression):
            """The text changed (typed, a sentence clicked, the refined text taken): diff and checkboxes follow."""
            if not draft_text:
                return "", gr.skip(), text_says(findings, impression)
            choices = draft_sentences(draft_text)
            return (diff_text(draft_text, join_sections(findings, impression)),
                    gr.update(value=present_choices(findings, impression, choices)), text_says(findings, impression))

        def use_refined(refined, findings, impression):
            return split_sections(refined) if refined else (findings, impression)

        filters = [self.status_filter, self.search]
        self.refresh.click(load, filters, self.table, **PRIVATE)
        self.status_filter.change(load, filters, self.table, **PRIVATE)
        self.search.submit(find, filters, [self.table, *outputs], **PRIVATE)
        self.table.select(pick, None, outputs, **PRIVATE)
        self.next_btn.click(stepper(1), [*filters, self.study_id], outputs, **PRIVATE)
        self.prev_btn.click(stepper(-1), [*filters, self.study_id], outputs, **PRIVATE)
        refine_out = [self.refined, self.refined_diff, self.refined_flags, self.refined_box]
        self.draft_btn.click(ui_draft, [self.files, self.indication], [*outputs, self.just_drafted, self.files],
                             **PRIVATE, **INGEST).then(
            refining, [self.just_drafted, self.refine_cb], refine_out, **PRIVATE).then(
            load, filters, self.table, **PRIVATE).then(
            ui_refine, [self.just_drafted, self.refine_cb, self.study_id], refine_out, **PRIVATE)
        self.redraft_btn.click(redraft, [self.study_id, *text], outputs, **PRIVATE).then(
            load, filters, self.table, **PRIVATE)
        self.confirm_btn.click(confirm_redraft, [self.study_id, *text], outputs, **PRIVATE).then(
            load, filters, self.table, **PRIVATE)
        self.keep_btn.click(keep_edits, None, self.confirm_row, **PRIVATE)
        self.add_btn.click(add, [self.files, self.indication, *filters], [*outputs, self.table, self.files],
                           **PRIVATE, **INGEST)
        self.use_refined_btn.click(use_refined, [self.refined, *text], text, **PRIVATE)
        self.sentences.select(choose, [*text, self.draft_text], [*text, self.sentences], **PRIVATE)
        for box in text:
            box.change(follow, [self.draft_text, *text], [self.diff, self.sentences, self.says], **PRIVATE)
        self.save_btn.click(save, [self.study_id, *text, self.seen], [self.status, self.history, self.seen], **PRIVATE)
        self.amend_btn.click(amend, None, [*text, self.sentences, self.signoff, self.approve_btn, self.amend_btn],
                             **PRIVATE)
        self.approve_btn.click(ui_approve, [self.study_id, *text, self.signoff, self.password, self.seen, *filters],
                               [*outputs, self.table, self.password],
                               **PRIVATE)
        self.export_btn.click(export, [self.study_id, self.export_fmt], self.export_file, **PRIVATE)


@contextmanager
def uploaded(files) -> Iterator[list[str]]:
    """The uploads' paths, each deleted once the action is over, whatever its outcome: Gradio keeps an
    upload under the name the user gave it, and a DICOM's name and header may identify the patient. What
    stays is what the store keeps: pixels under their content hash, no header. None given: no paths (the
    handler checks the caller's right first; the ingest then says nothing was given)."""
    files = files if isinstance(files, list) else [files] if files else []
    paths = [f if isinstance(f, str) else f.name for f in files]
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
