"""The Generate workspace (educators, radiologists): films from a report, from ticked findings or from the
other view, and a report drafted from films, so any of frontal, lateral and report comes from the others.
Every film shown or downloaded carries "SYNTHETIC" in its pixels and its metadata, and nothing here is
stored: no study, no similar case."""
from __future__ import annotations

import tempfile
from contextlib import ExitStack
from pathlib import Path

import gradio as gr

from xr.generate.anytoany import NORMAL
from xr.generate.model import GENERATED_FINDINGS
from xr.generate.synthetic import png_bytes, watermark
from xr.ui.common import INGEST, PRIVATE, ScreenError, refusing, uploaded, username
from xr.ui.tempfiles import private_folder
from xr.views import FRONTAL, LATERAL, VIEWS
from xr.workstation import Desk, Workstation

VIEW_CHOICES = list(VIEWS)
ABOUT = ("Synthetic films for teaching and for studies that lack a view, from a small latent diffusion model "
         "trained on about 800 films on a CPU (model card: `assets/film_generator/README.md`): "
         "expect coarse 256-pixel films, not diagnostic images. Give a report, tick findings, or give one view "
         "to make the other. The same inputs and seed make the same films.")


def make_films(desk: Desk, report: str, findings: list[str], frontal, lateral, views: list[str], seed,
               progress=lambda fraction, desc: None) -> tuple[list, str, list[str], dict]:
    """(gallery items, what was made from what, PNG paths, provenance) for one request of the workspace or
    the API. Uploaded films are deleted once read, as the reporting workspace's are."""
    with ExitStack() as stack:
        paths = {v: stack.enter_context(uploaded(f))[0] for v, f in zip(VIEWS, (frontal, lateral), strict=True) if f}
        wanted = [v for v in (views or VIEW_CHOICES) if v not in paths]
        if not wanted and paths:
            raise ScreenError("the films asked for are given: ask for the other view, or draft a report from the films")
        made = desk.generate(wanted, report or "", findings or [], paths.get(FRONTAL), paths.get(LATERAL),
                             int(seed or 0), progress)
    out = Path(tempfile.mkdtemp(prefix="xr-synthetic-", dir=private_folder(desk.settings)))
    files, gallery = [], []
    for view, film in made.films.items():
        path = out / f"synthetic_{view}_seed{made.seed}.png"
        path.write_bytes(png_bytes(film, {**made.provenance, "view": view}))
        files.append(str(path))
        gallery.append((watermark(film), f"SYNTHETIC {view}"))
    source = " + ".join(made.given)
    about = (f"**Synthetic** {' and '.join(made.films)} from {source} · seed {made.seed} · {made.model}"
             + (f" · findings: {', '.join(made.findings)}" if made.findings else "")
             + (f"\n\nReport used (written from the ticked findings):\n\n> {made.report.replace(chr(10), ' ')}"
                if made.report and not (report or "").strip() else ""))
    return gallery, about, files, made.provenance


class Generation:
    def __init__(self, ws: Workstation) -> None:
        self.ws = ws
        with gr.Tab("Generate", id="generate", visible=False) as self.tab:
            gr.Markdown(ABOUT)
            self.made = gr.State([])  # the PNGs of the last films made, for "draft a report from the films"
            with gr.Row():
                with gr.Column(scale=1, min_width=340):
                    self.report = gr.Textbox(label="Report to show (findings and impression)", lines=5,
                                             elem_id="generate-report")
                    self.findings = gr.CheckboxGroup([NORMAL, *GENERATED_FINDINGS], label="…or tick findings (used "
                                                     "when the report is empty)", elem_id="generate-findings")
                    with gr.Row():
                        self.frontal = gr.File(label="Frontal film (optional): make the lateral", elem_id="generate-frontal")
                        self.lateral = gr.File(label="Lateral film (optional): make the frontal", elem_id="generate-lateral")
                    self.views = gr.CheckboxGroup(VIEW_CHOICES, value=VIEW_CHOICES, label="Views to make")
                    self.seed = gr.Number(0, precision=0, label="Seed", minimum=0)
                    with gr.Row():
                        self.go = gr.Button("Generate films", variant="primary", elem_id="generate-go")
                        self.draft_btn = gr.Button("Draft a report from the films", elem_id="generate-draft")
                with gr.Column(scale=2):
                    self.gallery = gr.Gallery(label="Synthetic films", columns=2, height=420, object_fit="contain",
                                              elem_id="generated-films")
                    self.about = gr.Markdown(elem_id="generated-about")
                    self.files = gr.File(label="Download (PNG; synthetic in pixels and metadata)", file_count="multiple",
                                         interactive=False)
                    self.drafted = gr.Textbox(label="Report drafted from the films", lines=6, interactive=False,
                                              elem_id="generated-report")
        self._wire()

    def _wire(self) -> None:
        ws = self.ws

        @refusing()
        def ui_generate(report, findings, frontal, lateral, views, seed, request: gr.Request, progress=gr.Progress()):
            desk = ws.desk(username(request))
            desk.may("generate")  # first: a refusal whatever the inputs
            gallery, about, files, _ = make_films(desk, report, findings, frontal, lateral, views, seed,
                                                  lambda f, desc: progress(f, desc=desc))
            return gallery, about, files, files, None, None

        @refusing()
        def ui_films_report(frontal, lateral, made, request: gr.Request, progress=gr.Progress()):
            desk = ws.desk(username(request))
            desk.may("generate")
            given = [f for f in (frontal, lateral) if f]
            if given:
                with uploaded(given) as paths:
                    result = desk.films_report(paths, progress=lambda f, desc: progress(f, desc=desc))
                return result.draft.report, None, None
            if not made:
                raise ScreenError("give a film, or generate films first, to draft a report from")
            result = desk.films_report(made, progress=lambda f, desc: progress(f, desc=desc))
            return "(Drafted from SYNTHETIC films.)\n" + result.draft.report, gr.skip(), gr.skip()

        inputs = [self.report, self.findings, self.frontal, self.lateral, self.views, self.seed]
        self.go.click(ui_generate, inputs, [self.gallery, self.about, self.files, self.made, self.frontal, self.lateral],
                      **PRIVATE, **INGEST)
        self.draft_btn.click(ui_films_report, [self.frontal, self.lateral, self.made], [self.drafted, self.frontal, self.lateral],
                             **PRIVATE, **INGEST)
