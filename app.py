"""The workstation UI (Gradio Blocks): upload a study, read the draft and why, edit, approve.

Also serves the scripting API: `draft`, `save_draft`, `approve` and `refine` (see README) for gradio_client.
"""
from __future__ import annotations

import logging
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a clinical tool phones nobody

import gradio as gr  # noqa: E402
from PIL import Image  # noqa: E402

from db.session import engine_for  # noqa: E402
from xr import store  # noqa: E402
from xr.config import settings  # noqa: E402
from xr.errors import UserError  # noqa: E402
from xr.ingest import IngestError  # noqa: E402
from xr.draft.result import unrle  # noqa: E402
from xr.refine.refiner import REFINE_BY_DEFAULT  # noqa: E402
from xr.visualize import mask_overlay, overlay  # noqa: E402
from xr.workstation import LOCAL_USER, Workstation  # noqa: E402

log = logging.getLogger("xr.app")
DISCLAIMER = "**Research use only, not a medical device.** Drafts must be read and corrected by a radiologist."


def _fail(e: Exception) -> gr.Error:
    return gr.Error(str(e), print_exception=False)


def _measure_caption(v) -> str:
    caption = f"View {v.index + 1}: {v.view} ({'DICOM tag' if v.view_source == 'dicom' else 'from the image'})"
    if v.measurements and v.measurements.get("ctr") is not None:
        ctr = v.measurements["ctr"]
        caption += f" · CTR estimate {ctr:.2f} (from lung borders; reads lower than a measured CTR)"
    return caption


def build_app(ws: Workstation | None = None) -> gr.Blocks:
    ws = ws or Workstation()
    s = ws.settings

    def _paths(files) -> list[str]:
        if not files:
            raise gr.Error("Upload one or more images (PNG, JPEG, DICOM) or a zip of them.", print_exception=False)
        return [f if isinstance(f, str) else f.name for f in (files if isinstance(files, list) else [files])]

    def _draft(files, indication: str, progress):
        try:
            return ws.draft(_paths(files), indication or "", LOCAL_USER, progress=progress)
        except IngestError as e:
            raise _fail(e) from None

    def api_draft(files, indication: str) -> dict:
        result = _draft(files, indication, lambda *a: None)
        return {"study_id": result.study_id, **result.draft.to_json()}

    def ui_draft(files, indication: str, progress=gr.Progress()):
        result = _draft(files, indication, lambda f, desc: progress(f, desc=desc))
        d = result.draft
        views = [(overlay(im.pixels, v.fusion_weights), f"View {v.index + 1}: {v.view}")
                 for im, v in zip(result.study.images, d.views)]
        masks = [(mask_overlay(im.pixels, unrle(v.lung_mask)), _measure_caption(v))
                 for im, v in zip(result.study.images, d.views) if v.lung_mask]
        similar = [(Image.open(ws.index.library.directory / c.thumb), f"{c.case_id} · {c.similarity:.2f} · {c.report[:160]}")
                   for c in d.similar_cases if c.thumb]
        text_cases = "\n".join(f"- **{c.case_id}** ({c.via}, {c.similarity:.2f}; shares: "
                               f"{', '.join(c.shared_findings) or 'none'}): {c.report}" for c in d.similar_cases)
        status = (f"Study #{result.study_id} drafted by {d.model} {d.model_version} "
                  f"in {d.timings['total_ms']:.0f} ms. " + " ".join(d.notes))
        return (result.study_id, views, masks, d.report, dict(d.findings), similar, text_cases, status,
                store.history(s, result.study_id))

    def api_save(study_id: float, text: str) -> dict:
        try:
            rev = store.save_revision(s, int(study_id), text, LOCAL_USER)
        except (store.StoreError, TypeError, ValueError) as e:
            raise _fail(e) from None
        return {"study_id": int(study_id), "revision_id": rev}

    def api_approve(study_id: float, text: str) -> dict:
        try:
            approval = ws.approve(int(study_id), text, LOCAL_USER)
        except (store.StoreError, TypeError, ValueError) as e:
            raise _fail(e) from None
        return {"study_id": int(study_id), "approval_id": approval, "status": "approved"}

    def api_refine(study_id: float | None, text: str, indication: str) -> dict:
        """A stored study's latest draft (study_id), or a draft text with its indication."""
        if study_id is None and not (text or "").strip():
            raise gr.Error("Give a study_id or a draft text to refine.", print_exception=False)
        try:
            return ws.refine(int(study_id) if study_id is not None else None, text or "", indication or "").to_json()
        except (store.StoreError, UserError, TypeError, ValueError) as e:
            raise _fail(e) from None

    def ui_refine(study_id, enabled: bool):
        if not (enabled and study_id):
            return gr.update(), gr.update(), gr.update()
        r = api_refine(study_id, "", "")
        flags = "\n".join(f"- ⚠ {f}" for f in r["flags"]) or "No contradiction with the finding probabilities."
        return r["text"], r["diff"] or "(no change)", f"**Checks** ({r['model']}, {r['timings']['refine_ms']:.0f} ms):\n{flags}"

    def ui_save(study_id, text: str):
        if not study_id:
            raise gr.Error("Draft a study first.", print_exception=False)
        out = api_save(study_id, text)
        msg = "No changes to save." if out["revision_id"] is None else f"Saved revision #{out['revision_id']}."
        return msg, store.history(s, int(study_id))

    def ui_approve(study_id, text: str):
        if not study_id:
            raise gr.Error("Draft a study first.", print_exception=False)
        out = api_approve(study_id, text)
        return f"Approved (approval #{out['approval_id']}).", store.history(s, int(study_id))

    with gr.Blocks(title="XR drafting workstation") as demo:
        gr.Markdown("# Chest X-ray report drafting\n" + DISCLAIMER)
        study_id = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(label="Study: PNG, JPEG or DICOM images, or a zip", file_count="multiple")
                indication = gr.Textbox(label="Indication (optional)", placeholder="e.g. cough, fever")
                refine_cb = gr.Checkbox(label="Refine with the small LLM", value=REFINE_BY_DEFAULT,
                                        info="Rewrites the draft; shown beside it, not put in the report until you ask")
                draft_btn = gr.Button("Draft report", variant="primary")
                findings = gr.Label(label="Finding probabilities", num_top_classes=8)
            with gr.Column(scale=2):
                with gr.Tab("Heatmaps"):
                    views = gr.Gallery(label="Views with fusion-weight heatmaps (red = high weight; "
                                             "what it means is in the note under the report)",
                                       columns=2, height=420, object_fit="contain")
                with gr.Tab("Lung masks and measurements"):
                    masks = gr.Gallery(label="Lung masks; cardiothoracic ratio estimated from them (frontal views)",
                                       columns=2, height=420, object_fit="contain")
                report = gr.Textbox(label="Report (editable)", lines=10, interactive=True)
                with gr.Row():
                    save_btn = gr.Button("Save draft")
                    approve_btn = gr.Button("Approve", variant="primary")
                status = gr.Markdown()
        with gr.Accordion("Refined by the small LLM", open=True):
            with gr.Row():
                refined = gr.Textbox(label="Refined text", lines=8, interactive=False)
                refined_diff = gr.Code(label="Draft -> refined (diff)", language=None, lines=8)
            refined_flags = gr.Markdown()
            use_refined_btn = gr.Button("Use refined text")
        with gr.Accordion("Similar cases", open=True):
            similar = gr.Gallery(label="Nearest library images", columns=5, height=240, object_fit="contain")
            similar_text = gr.Markdown()
        with gr.Accordion("History of this study", open=False):
            hist = gr.JSON(label="Draft, edits and approvals")

        draft_btn.click(ui_draft, [files, indication],
                        [study_id, views, masks, report, findings, similar, similar_text, status, hist],
                        api_visibility="private").then(
            ui_refine, [study_id, refine_cb], [refined, refined_diff, refined_flags], api_visibility="private")
        use_refined_btn.click(lambda r, cur: r or cur, [refined, report], report, api_visibility="private")
        save_btn.click(ui_save, [study_id, report], [status, hist], api_visibility="private")
        approve_btn.click(ui_approve, [study_id, report], [status, hist], api_visibility="private")

        # Scripting API: plain JSON in and out, named endpoints (README: "API").
        with gr.Row(visible=False):
            api_study = gr.Number(label="study_id", precision=0)
            api_text = gr.Textbox(label="text")
            api_out = gr.JSON()
            api_draft_btn, api_save_btn, api_approve_btn, api_refine_btn = gr.Button(), gr.Button(), gr.Button(), gr.Button()
        api_draft_btn.click(api_draft, [files, indication], api_out, api_name="draft")
        api_save_btn.click(api_save, [api_study, api_text], api_out, api_name="save_draft")
        api_approve_btn.click(api_approve, [api_study, api_text], api_out, api_name="approve")
        api_refine_btn.click(api_refine, [api_study, api_text, indication], api_out, api_name="refine")
    demo.queue(default_concurrency_limit=2, max_size=64)
    return demo


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    s = settings()
    log.info("data directory %s; listening on %s:%d", s.data_dir, s.host, s.port)
    engine_for(s.database_url)  # create or migrate the database now: a bad URL fails here, not on a click
    ws = Workstation(s)
    ws.drafter  # load the models now, not on the first user's click
    ws.index.sync(s)  # the approved studies of the similar-case library
    ws.index.embed_text([""])  # and its text encoder
    build_app(ws).launch(server_name=s.host, server_port=s.port)


if __name__ == "__main__":
    main()
