"""The radiologist's workspace: worklist, the views side by side with window/level and zoom, the draft as
Findings and Impression with a sentence-by-sentence accept/reject, the diff against the draft, sign-off,
and the approved report out in an export format. The editor's text is the one truth: the sentence
checkboxes show what it holds, and what is signed is what is on screen. Each handler is an adapter over
one use case of the user's `Desk` (xr/workstation.py), which checks their right."""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from datetime import date
from typing import Any

import gradio as gr
from PIL import Image

from xr import store
from xr.decode.wording import sentence_labels
from xr.evaluate.labeler import POSITIVE, UNCERTAIN, label_report
from xr.export.approved import signer_name
from xr.export.registry import FORMATS
from xr.ingest.pacs import CHEST_MODALITIES
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
from xr.ui.common import INGEST, PRIVATE, ScreenError, need, refusing, uploaded, username
from xr.ui.panel import panel_markdown
from xr.ui.tempfiles import export_folder
from xr.ui.viewer import ShownFilm, Viewer, stored_views
from xr.watcher import Watcher
from xr.workstation import Desk, Workstation

PACS_COLUMNS = ["study", "date", "modality", "here"]
ALL_CHEST = "CR and DX"
WORKLIST_COLUMNS = ["id", "status", "patient", "views", "indication", "updated"]
HISTORY_COLUMNS = ["when (UTC)", "event", "by", "text"]
STUDY_NUMBER = re.compile(r"^#(\d+)$")


def day_of(text: str) -> date | None:
    """A date typed in the PACS search ('' for none)."""
    if not (text or "").strip():
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ScreenError(f"'{text.strip()}' is not a date: write it as YYYY-MM-DD") from None


def patient_of(age: int | None, sex: str | None) -> str:
    """'67 F' as the worklist and the header show the patient (age 90 and over is kept as 90: '90+')."""
    return " ".join(x for x in ("" if age is None else "90+" if age >= 90 else str(age), sex or "") if x) or "–"


def worklist_rows(desk: Desk, status: str, search: str) -> list[list]:
    return [[r["id"], r["status"] + (f" · {r['pacs']}" if r["pacs"] else ""), patient_of(r["age"], r["sex"]), r["views"],
             r["indication"], r["updated"]] for r in desk.worklist("" if status == "all" else status, search)]


def history_rows(desk: Desk, study_id: int) -> list[list]:
    return [[h.at.replace("T", " "), h.event, h.by, h.text] for h in desk.history(study_id)]


def text_says(findings: str, impression: str) -> str:
    """What the report on screen states and hedges, as the labeler reads it (the finding panel beside it
    has the probabilities): each hedged sentence is listed, marked, for the radiologist to confirm or remove.
    The text on screen, not the draft's record: the radiologist may have typed a hedge of their own."""
    text = join_sections(findings, impression)
    if not (findings or impression).strip():
        return ""
    labels = label_report(text)
    stated = [f for f, v in labels.items() if v == POSITIVE and f != "No Finding"]
    lines = [f"**The report states:** {', '.join(stated) or 'no finding'}."]
    hedged = [s for s in sentences(findings) + sentences(impression) if UNCERTAIN in sentence_labels(s).values()]
    lines += [f"⚠ **Hedged, check it:** *{literal_markdown(s)}*" for s in dict.fromkeys(hedged)]
    return "\n\n".join(lines)


@dataclass
class StudyScreen:
    """Everything the workspace shows of one study, each field named as the component it fills: every part
    of the screen (header, films, panel, report, export, refined text) is this study's."""
    study_id: int
    draft_text: str
    seen: str  # the stored text: saves and sign-offs are bound to it
    header: str
    views: list[ShownFilm]
    findings_box: Any
    impression_box: Any
    sentences: Any
    says: str
    panel: str
    similar: list
    similar_text: str
    history: list[list]
    diff: str
    signoff: Any
    status: str
    amend_btn: Any
    approve_btn: Any
    confirm_row: Any
    notes: str
    prior: str  # the prior study: its date and signed report
    export_file: None = None
    refined: str = ""
    refined_diff: str = ""
    refined_flags: str = ""


def header_of(desk: Desk, v: store.StudyRecord, notice: str) -> str:
    d = v.draft
    header = f"### Study #{v.id} · {v.status}"
    if v.age_years is not None or v.sex:
        header += f" · {patient_of(v.age_years, v.sex)}"
    header += f" · {v.day:%-d %B %Y}" if v.day else ""
    if v.indication:
        header += f" · indication: {literal_markdown(v.indication)}"
    if d:
        header += f"\nDrafted by {d.model} {d.model_version}."
    if v.approval:
        a = v.approval
        header += (f" Signed off by **{literal_markdown(signer_name(a.by, desk.settings))}** at {a.at.replace('T', ' ')} UTC"
                   f"{' (amended)' if a.amendment else ''}; press *Amend* to change it.")
    if v.not_in_pacs is not None:
        why = literal_markdown(v.not_in_pacs or "being sent")
        header += f"\n\n**Report not yet in PACS**: {why}; it is sent again until the PACS has it."
    return header + ("\n\n" + literal_markdown(notice) if notice else "")


def study_screen(desk: Desk, library_dir, study_id: int, notice: str = "") -> StudyScreen:
    """A study as the workspace shows it. A signed report is read-only until *Amend* is pressed. `notice`:
    one line of what just happened, under the header."""
    v = desk.study(study_id)
    d = v.draft
    findings, impression = split_sections(v.text)
    choices = draft_sentences(d.report) if d else []
    cases = d.similar_cases if d else []
    editable = v.approval is None
    return StudyScreen(
        study_id=study_id, draft_text=d.report if d else "", seen=v.text, header=header_of(desk, v, notice),
        views=stored_views(v),
        findings_box=gr.update(value=findings, interactive=editable),
        impression_box=gr.update(value=impression, interactive=editable),
        sentences=gr.update(choices=choices, value=present_choices(findings, impression, choices), interactive=editable),
        says=text_says(findings, impression),
        panel=panel_markdown(d.findings, d.statements) if d else panel_markdown({}, None),
        similar=[(Image.open(library_dir / c.thumb), f"{c.case_id} · {c.similarity:.2f} · {c.report[:160]}")
                 for c in cases if c.thumb],
        similar_text="\n".join(f"- **{literal_markdown(c.case_id)}** ({literal_markdown(c.via)}, {c.similarity:.2f}; "
                               f"shares: {literal_markdown(', '.join(c.shared_findings)) or 'none'}): "
                               f"{literal_markdown(c.report)}" for c in cases),
        history=history_rows(desk, study_id),
        diff=diff_text(d.report, join_sections(findings, impression)) if d else "",
        signoff=gr.update(value=False, interactive=editable), status="", amend_btn=gr.update(visible=not editable),
        approve_btn=gr.update(interactive=editable), confirm_row=gr.update(visible=False),
        notes="\n".join(f"- {literal_markdown(n)}" for n in (d.notes if d else [])) or "*No notes were kept with this draft.*",
        prior=prior_markdown(v.prior))


def prior_markdown(p: store.PriorStudy | None) -> str:
    if p is None:
        return "*No prior study of this patient here.*"
    when = f" of {p.day:%-d %B %Y}" if p.day else ""
    if p.signed_text is None:
        return f"**Prior: study #{p.study_id}{when}**, not signed: its draft's findings are what the comparison reads."
    return f"**Prior: study #{p.study_id}{when}**, signed report:\n\n{literal_markdown(p.signed_text)}"


class Reporting:
    def __init__(self, ws: Workstation, watcher: Watcher | None = None) -> None:
        self.ws, self.watcher = ws, watcher
        with gr.Tab("Reporting", id="reporting", visible=False) as self.tab:
            self.study_id, self.draft_text, self.just_drafted = gr.State(None), gr.State(""), gr.State(None)
            self.seen = gr.State("")  # the stored text as this page last read or wrote it: saves and sign-offs are bound to it
            # As reading stations hang them: the films at the screen's height in the middle, the draft (report
            # editor, sign-off, finding panel) beside them on the right, new studies and the worklist on the left.
            with gr.Row(elem_classes="xr-reporting"):
                with gr.Column(scale=2, min_width=250):
                    self._new_study_and_worklist()
                with gr.Column(scale=5):
                    self.viewer = Viewer()
                with gr.Column(scale=4, min_width=440, elem_id="draft-column"):
                    self._editor_and_signoff(ws.settings.auth)
            self._below_the_films()
        self._wire()

    def _new_study_and_worklist(self) -> None:
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
        self._pacs()
        gr.Markdown("### Worklist")
        with gr.Row():
            self.status_filter = gr.Dropdown(["all", *[st.value for st in store.StudyStatus]], value="all",
                                             label="Status", scale=3)
            self.refresh = gr.Button("Refresh", size="sm", scale=1)
        self.search = gr.Textbox(label="Search", placeholder="indication or report text; #12 opens study 12")
        self.table = gr.Dataframe(headers=WORKLIST_COLUMNS, interactive=False, max_height=320,
                                  label="Click a study to open it (N / P: next / previous)", elem_id="worklist")
        self.next_btn = gr.Button("next study", elem_classes=["xr-hidden", "xr-next-study"])
        self.prev_btn = gr.Button("previous study", elem_classes=["xr-hidden", "xr-prev-study"])

    def _pacs(self) -> None:
        """Studies searched in the PACS (XR_PACS_URL) and drafted onto the worklist; the watcher's last round."""
        with gr.Accordion("PACS", open=False, visible=bool(self.ws.settings.pacs_url), elem_id="pacs"):
            self.pacs_line = gr.Markdown(self.watcher.line() if self.watcher else "")
            with gr.Row():
                self.pacs_since = gr.Textbox(label="From (YYYY-MM-DD)", max_lines=1)
                self.pacs_until = gr.Textbox(label="To", max_lines=1)
            with gr.Row():
                self.pacs_modality = gr.Dropdown([ALL_CHEST, *CHEST_MODALITIES], value=ALL_CHEST, label="Modality")
                self.pacs_accession = gr.Textbox(label="Accession", max_lines=1)
            self.pacs_search_btn = gr.Button("Search the PACS", size="sm")
            self.pacs_found = gr.Dataframe(headers=PACS_COLUMNS, interactive=False, max_height=200, elem_id="pacs-found")
            self.pacs_refs = gr.State([])  # the studies found that are not on the worklist yet
            self.pacs_draft_btn = gr.Button("Draft the studies not on the worklist", size="sm")

    def _editor_and_signoff(self, auth: bool) -> None:
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
        self.signoff = gr.Checkbox(label="I have reviewed the images and this report, and sign it off", value=False)
        # with log-in on, signing asks for the password again: a session left open is not a signature
        self.password = gr.Textbox(label="Your password, to sign", type="password", visible=auth,
                                   elem_id="signoff-password", max_lines=1)
        with gr.Row():
            self.save_btn = gr.Button("Save draft", size="sm")
            self.amend_btn = gr.Button("Amend the signed report", visible=False, size="sm")
            self.approve_btn = gr.Button("Approve and sign (Ctrl+Enter)", variant="primary", elem_id="approve-btn", size="sm")
        self.status = gr.Markdown(elem_id="reporting-status")
        self.panel = gr.Markdown(panel_markdown({}, None), elem_id="finding-panel")
        self.says = gr.Markdown(elem_id="text-says")

    def _below_the_films(self) -> None:
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
        with gr.Accordion("Prior study (its frontal film hangs beside the current one)", open=True):
            self.prior = gr.Markdown(elem_id="prior-study")
        with gr.Accordion("How this draft was made", open=False):
            self.notes = gr.Markdown(elem_id="draft-notes")
        with gr.Accordion("Refined by the small LLM", open=False) as self.refined_box:
            with gr.Row():
                self.refined = gr.Textbox(label="Refined text", lines=8, interactive=False)
                self.refined_diff = gr.Code(label="Draft -> refined (diff)", language=None, lines=8)
            self.refined_flags = gr.Markdown()
            self.use_refined_btn = gr.Button("Use refined text")
        with gr.Accordion("Similar cases", open=True):
            self.similar = gr.Gallery(label="Nearest library images", columns=6, height=300, object_fit="contain",
                                      allow_preview=False)
            self.similar_text = gr.Markdown()
        with gr.Accordion("History of this study", open=False):
            self.history = gr.Dataframe(headers=HISTORY_COLUMNS, interactive=False, wrap=True,
                                        label="Drafts, edits and approvals", elem_id="history")

    # ---- a study on screen ----------------------------------------------------------------------------
    @property
    def study_outputs(self) -> list:
        """Every component a StudyScreen fills (the viewer's for its `views`)."""
        return [*self.viewer.outputs, *(getattr(self, f.name) for f in fields(StudyScreen) if f.name != "views")]

    def show(self, screen: StudyScreen) -> dict:
        """The screen as Gradio takes it: component -> value, by field name."""
        out = {getattr(self, f.name): getattr(screen, f.name) for f in fields(StudyScreen) if f.name != "views"}
        return {**out, **dict(zip(self.viewer.outputs, self.viewer.show(screen.views), strict=True))}

    def open(self, desk: Desk, study_id: int, notice: str = "") -> dict:
        return self.show(study_screen(desk, self.ws.index.library.directory, study_id, notice))

    def desk(self, request: gr.Request) -> Desk:
        return self.ws.desk(username(request))

    # ---- handlers: each one use case of the user's desk -------------------------------------------------
    def on_load(self, status, search, request: gr.Request):
        return worklist_rows(self.desk(request), status, search)

    def on_find(self, status, search, request: gr.Request):
        """The search box: '#12' opens study 12 (and lists it); anything else filters the list."""
        desk = self.desk(request)
        rows = worklist_rows(desk, status, search)
        number = STUDY_NUMBER.match((search or "").strip())
        return {self.table: rows, **(self.open(desk, int(number[1])) if number and rows else {})}

    def on_pick(self, evt: gr.SelectData, request: gr.Request):
        return self.open(self.desk(request), int(evt.row_value[0]))  # the desk checks the right

    def step(self, by: int):
        @refusing()
        def step_study(status, search, study_id, request: gr.Request):
            """The next (or previous) study of the worklist as filtered, from the one open."""
            desk = self.desk(request)
            ids = [r[0] for r in worklist_rows(desk, status, search)]
            if not ids:
                raise ScreenError("the worklist is empty")
            at = ids.index(study_id) + by if study_id in ids else 0
            return self.open(desk, ids[at % len(ids)])
        return step_study

    def on_draft(self, files, indication, request: gr.Request, progress=gr.Progress()):
        desk = self.desk(request)
        with uploaded(files) as paths:  # deleted even when the caller may not draft
            try:
                r = desk.draft(paths, indication or "", progress=lambda f, desc: progress(f, desc=desc))
            except store.KnownStudy as known:  # these films are a study already: open it, change nothing
                return {**self.open(desk, known.study_id, str(known).capitalize() + "."), self.files: None,
                        self.just_drafted: None}
        assert r.study_id is not None  # drafted with an actor: stored
        said = "" if (r.draft.findings_text or r.draft.impression) else " " + r.draft.notes[0]  # why it is empty
        return {**self.open(desk, r.study_id, f"Drafted in {r.draft.timings['total_ms']:.0f} ms.{said}"),
                self.just_drafted: r.study_id, self.files: None}

    def on_pacs_search(self, since, until, modality, accession, request: gr.Request):
        desk = self.desk(request)
        desk.may("draft")  # the right first, then the input
        found = desk.pacs_search(day_of(since), day_of(until), "" if modality == ALL_CHEST else modality, (accession or "").strip())
        new = [ref for ref, here in found if here is None]
        rows = [[ref.name, ref.date or "–", ref.modality, f"#{here}" if here else "not yet"] for ref, here in found]
        return {self.pacs_found: rows, self.pacs_refs: new,
                self.pacs_line: f"{len(found)} studies found, {len(new)} not on the worklist yet."}

    def on_pacs_draft(self, refs, status, search, request: gr.Request, progress=gr.Progress()):
        desk = self.desk(request)
        desk.may("draft")  # the right first, then the input
        if not refs:
            raise ScreenError("no study to draft: search the PACS first (studies already on the worklist are not drafted again)")
        drafted, refused = desk.pacs_draft(refs, progress=lambda f, desc: progress(f, desc=desc))
        line = f"{len(drafted)} studies drafted onto the worklist." + "".join(f"  \nRefused: {literal_markdown(r)}" for r in refused)
        return {self.table: worklist_rows(desk, status, search), self.pacs_refs: [], self.pacs_line: line}

    def on_add(self, files, indication, status, search, request: gr.Request):
        """The study goes on the worklist and is opened, so the whole screen is the study the header names."""
        desk = self.desk(request)
        with uploaded(files) as paths:
            try:
                sid = desk.add(paths, indication or "")
                notice = f"Study #{sid} is on the worklist, not drafted yet."
            except store.KnownStudy as known:
                sid, notice = known.study_id, str(known).capitalize() + "."
        return {**self.open(desk, sid, notice), self.table: worklist_rows(desk, status, search), self.files: None}

    def on_redraft(self, study_id, findings, impression, request: gr.Request, progress=gr.Progress()):
        """Draft a stored study again; if its text was edited (saved or on screen), ask first."""
        desk = self.desk(request)
        desk.may("draft")
        v = desk.study(need(study_id))
        on_screen = join_sections(findings, impression)
        if v.draft and (v.text != v.draft.report or on_screen.strip() != v.draft.report.strip()):
            return {self.confirm_row: gr.update(visible=True)}
        return self._drafted_again(desk, v.id, "", progress)

    def on_confirm_redraft(self, study_id, findings, impression, request: gr.Request, progress=gr.Progress()):
        """The edited text goes into the history as a revision, then the new draft replaces it."""
        desk = self.desk(request)
        desk.may("draft")
        return self._drafted_again(desk, need(study_id), join_sections(findings, impression), progress)

    def _drafted_again(self, desk: Desk, study_id: int, keep: str, progress) -> dict:
        r = desk.draft_again(study_id, keep, progress=lambda f, desc: progress(f, desc=desc))
        return self.open(desk, study_id, f"Drafted in {r.draft.timings['total_ms']:.0f} ms.")

    def on_refining(self, study_id, enabled, request: gr.Request):
        """Said at once: the refined text takes half a minute on a CPU, and arrives below."""
        self.desk(request).may("refine")
        if not (enabled and study_id):
            return gr.skip()
        return ("", "", f"*Refining the draft of study #{study_id} with the small LLM (about 30-50 s on a CPU)…*",
                gr.update(open=True))

    def on_refine(self, study_id, enabled, shown, request: gr.Request):
        desk = self.desk(request)
        desk.may("refine")  # first, like every handler: a refusal whatever the inputs
        if not (enabled and study_id) or shown != study_id:  # another study is open now: not shown over it
            return gr.skip()
        r = desk.refine(int(study_id)).to_json()
        flags = "\n".join(f"- ⚠ {f}" for f in r["flags"]) or "No contradiction with the finding probabilities."
        return (r["text"], r["diff"] or "(no change)",
                f"**Checks of the refined draft of study #{study_id}** ({r['model']}, "
                f"{r['timings']['refine_ms']:.0f} ms):\n{flags}", gr.update(open=True))

    def on_save(self, study_id, findings, impression, seen, request: gr.Request):
        desk = self.desk(request)
        desk.may("edit")
        text = join_sections(findings, impression)
        rev = desk.save(need(study_id), text, seen=seen)
        return ("No changes to save." if rev is None else "Saved your edits."), history_rows(desk, need(study_id)), text

    def on_approve(self, study_id, findings, impression, signed, password, seen, status, search, request: gr.Request):
        desk = self.desk(request)
        desk.may("approve")
        if not signed:
            raise ScreenError("tick the sign-off box to approve")
        approval = desk.approve(need(study_id), join_sections(findings, impression), password, seen=seen)
        return {**self.open(desk, study_id, f"Approved (approval #{approval})."),
                self.table: worklist_rows(desk, status, search), self.password: ""}

    def on_export(self, study_id, fmt, request: gr.Request):
        desk = self.desk(request)
        desk.may("export_report")
        with export_folder(self.ws.settings) as folder:
            return str(desk.export(need(study_id), fmt, folder))

    # ---- the editor, on the page alone -----------------------------------------------------------------
    @staticmethod
    def keep_edits():
        return gr.update(visible=False)

    @staticmethod
    def use_refined(refined, findings, impression):
        return split_sections(refined) if refined else (findings, impression)

    @staticmethod
    def amend():
        """Unlock a signed report for an amendment (approving it again is the amendment)."""
        return (gr.update(interactive=True), gr.update(interactive=True), gr.update(interactive=True),
                gr.update(interactive=True), gr.update(interactive=True), gr.update(visible=False))

    @staticmethod
    def choose(findings, impression, draft_text, evt: gr.SelectData):
        """One checkbox clicked: that sentence out of (or back into) the text, and nothing else."""
        choices = draft_sentences(draft_text)
        f, i = toggle_choice(findings, impression, choices, evt.value, evt.selected)
        return f, i, gr.update(value=present_choices(f, i, choices))

    @staticmethod
    def follow(draft_text, findings, impression):
        """The text changed (typed, a sentence clicked, the refined text taken): diff and checkboxes follow."""
        if not draft_text:
            return "", gr.skip(), text_says(findings, impression)
        choices = draft_sentences(draft_text)
        return (diff_text(draft_text, join_sections(findings, impression)),
                gr.update(value=present_choices(findings, impression, choices)), text_says(findings, impression))

    # ---- wiring ------------------------------------------------------------------------------------------
    def _wire(self) -> None:
        self._wire_worklist()
        self._wire_drafting()
        self._wire_editor()

    def _wire_worklist(self) -> None:
        filters, outputs = [self.status_filter, self.search], self.study_outputs
        load = refusing()(self.on_load)
        self.refresh.click(load, filters, self.table, **PRIVATE)
        self.status_filter.change(load, filters, self.table, **PRIVATE)
        self.search.submit(refusing()(self.on_find), filters, [self.table, *outputs], **PRIVATE)
        self.table.select(refusing()(self.on_pick), None, outputs, **PRIVATE)
        self.next_btn.click(self.step(1), [*filters, self.study_id], outputs, **PRIVATE)
        self.prev_btn.click(self.step(-1), [*filters, self.study_id], outputs, **PRIVATE)

    def _wire_drafting(self) -> None:
        filters, outputs, text = [self.status_filter, self.search], self.study_outputs, [self.findings_box, self.impression_box]
        load = refusing()(self.on_load)
        refine_out = [self.refined, self.refined_diff, self.refined_flags, self.refined_box]
        # a refused draft or addition has deleted its uploads: the box empties (and nothing is refined after it)
        consumed = refusing(lambda: {self.files: None, self.just_drafted: None})
        self.draft_btn.click(consumed(self.on_draft), [self.files, self.indication], [*outputs, self.just_drafted, self.files],
                             **PRIVATE, **INGEST).then(
            refusing()(self.on_refining), [self.just_drafted, self.refine_cb], refine_out, **PRIVATE).then(
            load, filters, self.table, **PRIVATE).then(
            refusing()(self.on_refine), [self.just_drafted, self.refine_cb, self.study_id], refine_out, **PRIVATE)
        self.redraft_btn.click(refusing()(self.on_redraft), [self.study_id, *text], outputs, **PRIVATE).then(
            load, filters, self.table, **PRIVATE)
        self.confirm_btn.click(refusing()(self.on_confirm_redraft), [self.study_id, *text], outputs, **PRIVATE).then(
            load, filters, self.table, **PRIVATE)
        self.keep_btn.click(self.keep_edits, None, self.confirm_row, **PRIVATE)
        emptied = refusing(lambda: {self.files: None})
        self.pacs_search_btn.click(refusing()(self.on_pacs_search), [self.pacs_since, self.pacs_until, self.pacs_modality,
                                                                     self.pacs_accession],
                                   [self.pacs_found, self.pacs_refs, self.pacs_line], **PRIVATE)
        self.pacs_draft_btn.click(refusing()(self.on_pacs_draft), [self.pacs_refs, *filters],
                                  [self.table, self.pacs_refs, self.pacs_line], **PRIVATE)
        self.add_btn.click(emptied(self.on_add), [self.files, self.indication, *filters], [*outputs, self.table, self.files],
                           **PRIVATE, **INGEST)

    def _wire_editor(self) -> None:
        filters, outputs, text = [self.status_filter, self.search], self.study_outputs, [self.findings_box, self.impression_box]
        self.use_refined_btn.click(self.use_refined, [self.refined, *text], text, **PRIVATE)
        self.sentences.select(self.choose, [*text, self.draft_text], [*text, self.sentences], **PRIVATE)
        for box in text:
            box.change(self.follow, [self.draft_text, *text], [self.diff, self.sentences, self.says], **PRIVATE)
        self.save_btn.click(refusing()(self.on_save), [self.study_id, *text, self.seen], [self.status, self.history, self.seen],
                            **PRIVATE)
        self.amend_btn.click(self.amend, None, [*text, self.sentences, self.signoff, self.approve_btn, self.amend_btn],
                             **PRIVATE)
        self.approve_btn.click(refusing()(self.on_approve), [self.study_id, *text, self.signoff, self.password, self.seen,
                                                          *filters], [*outputs, self.table, self.password], **PRIVATE)
        self.export_btn.click(refusing()(self.on_export), [self.study_id, self.export_fmt], self.export_file, **PRIVATE)
