"""The app's scripting API (docs/using.md, "From a script"): named endpoints with plain JSON in and out, each an
adapter over one use case of the caller's desk (xr/workstation.py), which checks their role as the UI's
handlers do. A refusal is a one-line error that gradio_client raises."""
from __future__ import annotations

import gradio as gr

from xr import store
from xr.ui.common import INGEST, guarded, need, uploaded, username
from xr.ui.generation import Generation, make_films
from xr.ui.reporting import Reporting, day_of
from xr.ui.teaching import teaching_cases
from xr.ui.tempfiles import export_folder
from xr.workstation import Desk, Workstation


class Api:
    def __init__(self, ws: Workstation) -> None:
        self.ws = ws

    def desk(self, request: gr.Request) -> Desk:
        return self.ws.desk(username(request))

    def draft(self, files, indication: str, request: gr.Request) -> dict:
        d = self.desk(request)
        with uploaded(files) as paths:
            result = d.draft(paths, indication or "")
        return {"study_id": result.study_id, **result.draft.to_json()}

    def save_draft(self, study_id: float, text: str, request: gr.Request) -> dict:
        d = self.desk(request)
        d.may("edit")  # the right first, then the input
        return {"study_id": need(study_id), "revision_id": d.save(need(study_id), text)}

    def approve(self, study_id: float, text: str, request: gr.Request, password: str | None = None) -> dict:
        """An approval through the API is the caller's sign-off: it asks for their password again, as the
        UI does (a session cookie alone does not sign)."""
        d = self.desk(request)
        d.may("approve")  # the right first, then the input
        approval = d.approve(need(study_id), text, password or "")
        return {"study_id": need(study_id), "approval_id": approval, "status": store.StudyStatus.APPROVED.value}

    def refine(self, study_id: float | None, text: str, indication: str, request: gr.Request) -> dict:
        """A stored study's latest draft (study_id), or a draft text with its indication."""
        return self.desk(request).refine(int(study_id) if study_id is not None else None, text or "", indication or "").to_json()

    def worklist(self, status: str, text: str, request: gr.Request) -> list[dict]:
        return self.desk(request).worklist(status or "", text or "")

    def export_report(self, study_id: float, fmt: str, request: gr.Request) -> str:
        d = self.desk(request)
        d.may("export_report")
        with export_folder(self.ws.settings) as folder:
            return str(d.export(need(study_id), fmt or "sr", folder))

    def correct(self, study_id: float, text: str, tags: list[str], request: gr.Request) -> dict:
        d = self.desk(request)
        d.may("correct")
        return {"study_id": need(study_id), "revision_id": d.correct(need(study_id), text, tags or [])}

    def teaching(self, finding: str, request: gr.Request) -> list[dict]:
        return [{"id": c.id, "labels": list(c.labels), "has_report": bool(c.reference)}
                for c in teaching_cases(self.desk(request), finding or "")]

    def generate(self, report: str, findings: list[str], frontal, lateral, views: list[str], seed: float,
                 request: gr.Request) -> tuple[list[str], dict]:
        """Synthetic films (PNGs marked synthetic in pixels and metadata) and what they were made from."""
        d = self.desk(request)
        d.may("generate")
        _, _, files, provenance = make_films(d, report, findings, frontal, lateral, views, seed)
        return files, provenance

    def films_report(self, files, request: gr.Request) -> dict:
        """A report drafted from films (real or synthetic) without storing anything: the films -> report
        side of any-to-any generation."""
        d = self.desk(request)
        d.may("generate")
        with uploaded(files) as paths:
            return d.films_report(paths).draft.to_json()

    def pacs_search(self, since: str, until: str, modality: str, accession: str, request: gr.Request) -> list[dict]:
        """Chest studies in the PACS (dates YYYY-MM-DD or ''), each with its study number here (None: not yet)."""
        d = self.desk(request)
        d.may("draft")
        return [{"study": ref.name, "date": ref.date, "modality": ref.modality, "study_id": here}
                for ref, here in d.pacs_search(day_of(since), day_of(until), modality or "", accession or "")]

    def pacs_draft(self, since: str, until: str, modality: str, accession: str, request: gr.Request) -> dict:
        """The studies the same search finds that are not on the worklist yet, drafted onto it."""
        d = self.desk(request)
        d.may("draft")
        found = d.pacs_search(day_of(since), day_of(until), modality or "", accession or "")
        drafted, refused = d.pacs_draft([ref for ref, here in found if here is None])
        return {"drafted": drafted, "refused": refused}

    def register(self, reporting: Reporting, generation: Generation) -> None:
        """One hidden button per endpoint, its inputs the workspaces' components where they have them."""
        with gr.Row(visible=False):
            study, text, other = gr.Number(label="study_id", precision=0), gr.Textbox(label="text"), gr.Textbox(label="x")
            password = gr.Textbox(label="password", type="password")
            films_out = gr.File(file_count="multiple")
            tags = gr.JSON(label="tags")
            out, out_file = gr.JSON(), gr.File()
            pacs = [gr.Textbox(label=name) for name in ("since", "until", "modality", "accession")]
            g = generation
            for fn, inputs, output in ((self.draft, [reporting.files, reporting.indication], out),
                                       (self.save_draft, [study, text], out), (self.approve, [study, text, password], out),
                                       (self.refine, [study, text, reporting.indication], out), (self.worklist, [other, text], out),
                                       (self.export_report, [study, other], out_file), (self.correct, [study, text, tags], out),
                                       (self.teaching, [other], out), (self.films_report, [reporting.files], out),
                                       (self.pacs_search, pacs, out), (self.pacs_draft, pacs, out),
                                       (self.generate, [g.report, g.findings, g.frontal, g.lateral, g.views, g.seed], [films_out, out])):
                gr.Button(visible=False).click(guarded(fn), inputs, output, api_name=fn.__name__,
                                               **(INGEST if fn in (self.draft, self.films_report, self.generate) else {}))
