"""The educator's workspace: the case library by finding, each case's images with evidence map and lung mask,
quiz mode (the report stays on the server until revealed), and the model's draft against the reference
with per-case scores."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from xr.evaluate.case import case_metrics
from xr.findings import FINDINGS
from xr.ingest import read_pixels
from xr.report import compose_report, literal_markdown
from xr.result import DraftResult
from xr.retrieve.library import has_report
from xr.ui.common import PRIVATE, ScreenError, refusing, username
from xr.ui.viewer import Viewer, stored_views, views_of
from xr.workstation import Desk, Workstation

MAX_SHOWN = 60


@dataclass(frozen=True)
class TeachingCase:
    id: str  # library case id, or "study:N" for an approved study
    labels: tuple[str, ...]
    image: Path
    reference: str  # the report; "" for label-only cases (NIH)
    study_id: int | None = None

    def caption(self, quiz: bool) -> str:
        """In quiz mode the case's number only: its id names the source and its labels the answer."""
        return "" if quiz else f"{self.id} · {', '.join(self.labels) or 'no finding'}"


def teaching_cases(desk: Desk, finding: str = "") -> list[TeachingCase]:
    """Approved studies first (full-resolution images, a radiologist's report), then the shipped library's
    cases that have an image (thumbnails: NIH with labels, a few IU with reports)."""
    cases = [TeachingCase(f"study:{r.study_id}", tuple(r.labels), Path(r.image), r.report, r.study_id)
             for r in desk.teaching_studies()]
    lib = desk.ws.index.library
    for img in lib.images:
        c = lib.by_id[img["case"]]
        reference = compose_report(c["findings"], c["impression"]) if has_report(c) else ""
        cases.append(TeachingCase(c["id"], tuple(c["labels"]), lib.directory / "thumbs" / img["thumb"], reference))
    if finding and finding != "all":
        cases = [c for c in cases if finding in c.labels]
    return cases


class Teaching:
    def __init__(self, ws: Workstation) -> None:
        self.ws = ws
        self._drafts: dict[str, DraftResult] = {}  # library case -> its draft: drafted once per process
        self._lock = threading.Lock()
        with gr.Tab("Teaching", id="teaching", visible=False) as self.tab:
            self.case_id = gr.State(None)
            with gr.Row():
                with gr.Column(scale=1, min_width=340):
                    self.finding = gr.Dropdown(["all", *[f for f in FINDINGS if f != "No Finding"]], value="all",
                                               label="Cases with this finding")
                    self.count = gr.Markdown(elem_id="teaching-count")
                    self.gallery = gr.Gallery(label="Click a case to open it", columns=3, height=420,
                                              object_fit="contain", allow_preview=False, elem_id="teaching-cases")
                    self.quiz = gr.Checkbox(label="Quiz mode: hide the report and the model's draft", value=False)
                with gr.Column(scale=2):
                    self.header = gr.Markdown("### Pick a case")
                    self.viewer = Viewer(label="Case images")
            with gr.Row():
                with gr.Column():
                    self.guess = gr.Textbox(label="Your reading (optional, scored against the reference on reveal)",
                                            lines=3)
                    self.reveal_btn = gr.Button("Reveal the report", variant="primary")
                with gr.Column():
                    self.reference = gr.Markdown(elem_id="teaching-reference")
            with gr.Row():
                self.model_draft = gr.Markdown(elem_id="teaching-draft")
                self.metrics = gr.Dataframe(headers=["", "BLEU-4", "ROUGE-L", "finding F1", "agree", "missed", "added"],
                                            interactive=False, label="Per-case comparison with the reference")
        self._wire()

    def _case(self, desk: Desk, case_id: str) -> TeachingCase:
        for c in teaching_cases(desk):
            if c.id == case_id:
                return c
        raise ScreenError(f"no teaching case {case_id}")

    def _draft(self, desk: Desk, case: TeachingCase) -> tuple[list, str]:
        """(viewer films, draft text): stored for approved studies, drafted once otherwise."""
        if case.study_id is not None:
            v = desk.teaching_study(case.study_id)
            assert v.draft is not None  # an approved study: drafted
            return stored_views(v), v.draft.report
        with self._lock:
            if case.id not in self._drafts:
                # Drafted without itself: its own labels and report would otherwise make the draft.
                self._drafts[case.id] = self.ws.draft([case.image], "", actor=None,
                                                      exclude=frozenset({case.id})).draft
        d = self._drafts[case.id]
        return views_of([read_pixels(case.image)], d), d.report

    def _answer(self, case: TeachingCase, draft: str, guess: str) -> tuple:
        ref = case.reference or ("Labels (NIH ChestX-ray14, no report): " + (", ".join(case.labels) or "No Finding"))
        rows = []
        for name, text in (("model draft", draft), ("your reading", guess)):
            if name == "your reading" and not (guess or "").strip():
                continue
            m = case_metrics(text, case.reference, None if case.reference else list(case.labels))
            rows.append([name, _fmt(m.get("BLEU-4")), _fmt(m.get("ROUGE-L")), _fmt(m["finding_f1"]),
                         ", ".join(m["agree"]), ", ".join(m["missed"]), ", ".join(m["added"])])
        return (f"**Reference** ({literal_markdown(case.id)}):\n\n{literal_markdown(ref)}",
                f"**Model draft**:\n\n{literal_markdown(draft)}", rows)

    def _wire(self) -> None:
        ws = self.ws

        @refusing()
        def browse(finding, quiz, request: gr.Request):
            """The gallery; in quiz mode every case, unlabelled (a filter by finding would name the answer)."""
            cases = teaching_cases(ws.desk(username(request)), "all" if quiz else finding)
            shown = [(str(c.image), c.caption(quiz) or None) for c in cases[:MAX_SHOWN]]
            more = f" (first {MAX_SHOWN} shown)" if len(cases) > MAX_SHOWN else ""
            return (gr.update(visible=not quiz), shown, f"{len(cases)} cases{more}",
                    [c.id for c in cases[:MAX_SHOWN]])

        @refusing()
        def pick(ids, quiz, evt: gr.SelectData, request: gr.Request, progress=gr.Progress()):
            desk = ws.desk(username(request))
            desk.may("teach")
            if not isinstance(evt.index, int) or not 0 <= evt.index < len(ids or []):
                raise ScreenError("pick a case from the gallery")
            case = self._case(desk, ids[evt.index])
            progress(0.2, desc="Drafting the case (first time only)")
            views, draft = self._draft(desk, case)
            # in quiz mode the case's id would name its source (and, for a library film, its labels' dataset)
            header = "### Quiz case" if quiz else f"### {case.id} · {', '.join(case.labels) or 'no finding'}"
            hidden: tuple[str, str, list[list[str]]] = ("*Quiz mode: read the images, then reveal.*", "", [])
            return (case.id, header, *self.viewer.show(views, "none"), "",
                    *(hidden if quiz else self._answer(case, draft, "")))

        @refusing()
        def reveal(case_id, guess, request: gr.Request):
            desk = ws.desk(username(request))
            desk.may("teach")
            if not case_id:
                raise ScreenError("pick a case first")
            case = self._case(desk, case_id)
            _, draft = self._draft(desk, case)
            return (f"### {case.id} · {', '.join(case.labels) or 'no finding'}", *self._answer(case, draft, guess))

        ids = gr.State([])
        answer = [self.reference, self.model_draft, self.metrics]
        listed = [self.finding, self.gallery, self.count, ids]
        self.finding.change(browse, [self.finding, self.quiz], listed, **PRIVATE)
        self.quiz.change(browse, [self.finding, self.quiz], listed, **PRIVATE)
        self.tab.select(browse, [self.finding, self.quiz], listed, **PRIVATE)
        self.gallery.select(pick, [ids, self.quiz], [self.case_id, self.header, *self.viewer.outputs, self.guess,
                                                     *answer], **PRIVATE)
        self.reveal_btn.click(reveal, [self.case_id, self.guess], [self.header, *answer], **PRIVATE)


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.3f}"
