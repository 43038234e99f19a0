"""The image viewer every workspace shares, laid out as a reading station's hanging protocol: the frontal
view on the left and the lateral on the right, side by side at the height of the screen; window/level by
dragging over the film (or the sliders), zoom by clicking where to look, and on top the evidence map of
the most probable finding, the fusion weights or the lung mask. Keyboard: V next view, O overlay on/off
(xr/ui/keys.js). Rendering runs on the server from the stored 8-bit pixels, so what a radiologist sees is
what the models saw."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np
from PIL import Image

from xr.evaluate.fusion import is_flat
from xr.ingest import read_pixels
from xr.result import DraftResult, unrle
from xr.store import StudyRecord
from xr.ui.common import PRIVATE
from xr.views import FRONTAL, LATERAL, VIEWS
from xr.visualize import mask_overlay, overlay, window_level, zoom_box

OVERLAYS = ("none", "evidence", "fusion weights", "lung mask")
FLAT_FUSION = ("*Fusion weights: the generator's gates are almost the same all over this film, so the map says "
               "little about where the image mattered.*")
FUSION = ("*Fusion weights: per region, how much the generator drew on this film (red) rather than on the text "
          "(blue: indication, finding prompt, similar reports). It shows what the words leant on, not where a finding "
          "is: that is the evidence map.*")
DISPLAY = 1024  # longest side of the picture sent to the browser
HEIGHT = "calc(100vh - 150px)"  # a film is read at the height of the screen
DEFAULT_WINDOW = (128, 255, False, 1)  # centre, width, invert, zoom


@dataclass
class ShownFilm:
    """A film as the viewer shows it: its pixels, its view and the draft's overlays."""
    pixels: np.ndarray  # uint8 HxW as stored
    caption: str
    grid: list[list[float]] | None = None  # fusion weights over the image's regions
    evidence: tuple[str, list[list[float]]] | None = None  # (finding, map over the regions): the most probable
    mask: dict | None = None  # lung mask, run-length encoded; frontal views only
    view: str = "unknown"  # "frontal", "lateral" or "unknown"
    prior: bool = False  # a film of the patient's prior study, hung beside the current frontal


def views_of(pixels: list[np.ndarray], draft: DraftResult | None) -> list[ShownFilm]:
    """Viewer views of films with their draft's overlays, frontal views first. A lateral view has no lung
    mask: the U-Net was trained on frontal films, and its output there means nothing."""
    out = []
    for i, px in enumerate(pixels):
        v = draft.views[i] if draft and i < len(draft.views) else None
        kind = v.view if v else "unknown"
        evidence = next(iter(v.evidence.items()), None) if v else None
        out.append(ShownFilm(px, f"View {i + 1}: {kind}", grid=(v.fusion_weights or None) if v else None, evidence=evidence,
                        mask=v.lung_mask if v and kind != LATERAL else None, view=kind))
    return sorted(out, key=lambda v: VIEWS.index(v.view) if v.view in VIEWS else len(VIEWS))


def stored_views(study: StudyRecord) -> list[ShownFilm]:
    """Viewer views of a stored study (`store.study_record`): its images with its latest draft's overlays,
    then its prior's frontal film, where the patient has a prior study."""
    views = views_of([read_pixels(im.path) for im in study.images], study.draft)
    p = study.prior
    if p is not None and p.frontal:
        views.append(ShownFilm(read_pixels(p.frontal), f"Prior: study #{p.study_id}" + (f" of {p.day:%-d %B %Y}" if p.day else "")
                               + (" (signed)" if p.signed_text is not None else " (not signed)"), view=FRONTAL, prior=True))
    return views


def render(view: ShownFilm, layer: str, centre: float, width: float, invert: bool, factor: float,
           focus: tuple[float, float]) -> Image.Image:
    grey = window_level(view.pixels, centre, width, invert)
    side = max(grey.shape) if factor > 1 else DISPLAY  # zoomed: overlay at full resolution, then crop
    if layer == "fusion weights" and view.grid is not None:
        picture = overlay(grey, view.grid, max_side=side)
    elif layer == "evidence" and view.evidence is not None:
        picture = overlay(grey, view.evidence[1], max_side=side)
    elif layer == "lung mask" and view.mask is not None:
        picture = mask_overlay(grey, unrle(view.mask), max_side=side)
    else:
        picture = Image.fromarray(grey).convert("RGB")
    if factor > 1:
        picture = picture.crop(zoom_box(picture.size, factor, focus))
    picture.thumbnail((DISPLAY, DISPLAY))
    if factor > 1 and max(picture.size) < DISPLAY:  # a zoomed crop fills the pane; a small film stays as it is
        scale = DISPLAY / max(picture.size)
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.Resampling.LANCZOS)
    return picture


def hanging(views: list[ShownFilm], which: str | None) -> tuple[ShownFilm | None, ShownFilm | None]:
    """(left, right) panes: the chosen view on the left and, beside it, the prior's frontal where the left
    is the current frontal (a comparison, as reading stations hang it) or the current frontal where the
    left is the prior; else the study's first view of the other kind (a lateral beside a frontal), else its
    next one; None where there is nothing to hang."""
    if not views:
        return None, None
    i = min(max(int(which) - 1 if which else 0, 0), len(views) - 1)
    left = views[i]
    current = [v for j, v in enumerate(views) if j != i and not v.prior]
    prior = next((v for j, v in enumerate(views) if j != i and v.prior), None)
    if left.prior:
        return left, next((v for v in current if v.view == FRONTAL), current[0] if current else None)
    if prior is not None and left.view == FRONTAL:
        return left, prior
    return left, next((v for v in current if v.view != left.view), current[0] if current else None)


class Viewer:
    """Build inside a Blocks context; `show(views)` returns the updates that load a new set of views."""

    def __init__(self, label: str = "Images") -> None:
        self.views = gr.State([])
        self.focus = gr.State((0.5, 0.5))
        with gr.Group(elem_classes="xr-viewer-group"):
            with gr.Row():
                self.which = gr.Radio([], label="View on the left (V: next)", scale=2)
                self.layer = gr.Radio(list(OVERLAYS), value="none", label="Overlay (O: on/off)",
                                      info="evidence: where the most probable finding's probability comes from (red = "
                                           "most); fusion weights: image vs text per region; lung mask: frontal only",
                                      scale=3)
            with gr.Row(equal_height=True):
                self.image = gr.Image(label=label, type="pil", interactive=False, height=HEIGHT,
                                      buttons=["fullscreen"], elem_classes="xr-viewer", show_label=False)
                self.other = gr.Image(label=label + " (second view)", type="pil", interactive=False, height=HEIGHT,
                                      buttons=["fullscreen"], elem_classes="xr-viewer", show_label=False,
                                      visible=False)
            self.caption = gr.Markdown()
            with gr.Row():
                self.centre = gr.Slider(0, 255, value=128, step=1, label="Window centre (level; drag up/down)",
                                        elem_classes="xr-centre")
                self.width = gr.Slider(1, 255, value=255, step=1, label="Window width (drag left/right)",
                                       elem_classes="xr-width")
                self.zoom = gr.Slider(1, 6, value=1, step=0.5, label="Zoom (click the image to centre)")
            with gr.Row():
                self.invert = gr.Checkbox(label="Invert", value=False)
                self.reset = gr.Button("Reset window and zoom", size="sm")
            # Written by keys.js: a drag's new window ("centre,width"), and the keyboard's buttons.
            self.dragged = gr.Textbox(elem_classes=["xr-hidden", "xr-wl"], show_label=False, container=False)
            self.next_btn = gr.Button("next view", elem_classes=["xr-hidden", "xr-next-view"])
            self.toggle_btn = gr.Button("overlay", elem_classes=["xr-hidden", "xr-toggle-overlay"])
        controls = [self.views, self.which, self.layer, self.centre, self.width, self.invert, self.zoom, self.focus]
        drawn = [self.image, self.other, self.caption]
        for c in (self.which, self.layer, self.invert):
            c.change(self._draw, controls, drawn, **PRIVATE)
        for slider in (self.centre, self.width, self.zoom):
            slider.release(self._draw, controls, drawn, **PRIVATE)
        for pane in (0, 1):
            (self.image, self.other)[pane].select(self._click if pane == 0 else self._click_other, controls,
                                                  [self.focus, self.zoom, *drawn], **PRIVATE)
        self.reset.click(lambda: (*DEFAULT_WINDOW, (0.5, 0.5)), None,
                         [self.centre, self.width, self.invert, self.zoom, self.focus],
                         **PRIVATE).then(self._draw, controls, drawn, **PRIVATE)
        self.dragged.change(self._drag, [self.dragged, *controls], [self.centre, self.width, *drawn], **PRIVATE)
        self.next_btn.click(self._next, [self.views, self.which], self.which, **PRIVATE)
        self.toggle_btn.click(self._toggle, [self.views, self.layer], self.layer, **PRIVATE)

    @property
    def outputs(self) -> list:
        return [self.views, self.which, self.focus, self.image, self.other, self.caption, self.centre, self.width,
                self.invert, self.zoom, self.layer]

    def show(self, views: list[ShownFilm], layer: str = "none") -> tuple:
        """Values for `outputs`: the first view at the default window, not zoomed, the overlay `layer`."""
        choices = [(f"{i + 1}: {'prior ' if v.prior else ''}{v.view}", f"{i + 1}") for i, v in enumerate(views)]
        if not views:
            return ([], gr.update(choices=[], value=None), (0.5, 0.5), None, gr.update(value=None, visible=False),
                    "", *DEFAULT_WINDOW, layer)
        left, right, caption = self._pictures(views, "1", layer, *DEFAULT_WINDOW[:3], 1, (0.5, 0.5))
        return (views, gr.update(choices=choices, value="1"), (0.5, 0.5), left, right, caption, *DEFAULT_WINDOW,
                layer)

    @staticmethod
    def _pictures(views, which, layer, centre, width, invert, factor, focus) -> tuple:
        left, right = hanging(views, which)
        if left is None:
            return None, gr.update(value=None, visible=False), ""
        caption = left.caption + (f"  \n{right.caption}" if right else "")
        if layer == "lung mask" and (left.mask is None or (right and right.mask is None)):
            caption += "  \n*No lung mask on a lateral view: the segmentation model reads frontal films only.*"
        if layer == "evidence":
            shown = [v.evidence for v in (left, right) if v is not None and v.evidence is not None]
            caption += (f"  \n*Evidence for {shown[0][0]}: the regions of the lungs that raise the finding "
                        "head's probability (a class activation map; the heart-size measurements add to it but have no "
                        "place on the film).*" if shown else
                        "  \n*No evidence map: it is drawn on frontal views, for the shipped finding head.*")
        if layer == "fusion weights":
            grids = [v.grid for v in (left, right) if v is not None and v.grid is not None]
            caption += "  \n" + ("*No fusion-weight map with this draft.*" if not grids
                                 else FLAT_FUSION if all(is_flat(np.asarray(g)) for g in grids) else FUSION)
        second = (gr.update(value=render(right, layer, centre, width, invert, factor, focus), visible=True)
                  if right else gr.update(value=None, visible=False))
        return render(left, layer, centre, width, invert, factor, focus), second, caption

    def _draw(self, views, which, layer, centre, width, invert, factor, focus):
        return self._pictures(views, which, layer, centre, width, invert, factor, tuple(focus))

    def _drag(self, dragged, views, which, layer, centre, width, invert, factor, focus):
        """A window/level drag over the film ended (keys.js previewed it with CSS filters meanwhile)."""
        try:
            c, w = (float(x) for x in (dragged or "").split(",")[:2])
        except ValueError:
            return gr.skip()
        c, w = min(max(round(c), 0), 255), min(max(round(w), 1), 255)
        return (c, w, *self._pictures(views, which, layer, c, w, invert, factor, tuple(focus)))

    @staticmethod
    def _next(views, which):
        return str(int(which or 0) % len(views) + 1) if views else gr.skip()

    @staticmethod
    def _toggle(views, layer):
        """Overlay on/off: off if one is shown, else the evidence map."""
        return gr.skip() if not views else ("none" if layer != "none" else "evidence")

    def _click(self, views, which, layer, centre, width, invert, factor, focus, evt: gr.SelectData):
        return self._zoom_at(0, views, which, layer, centre, width, invert, factor, focus, evt)

    def _click_other(self, views, which, layer, centre, width, invert, factor, focus, evt: gr.SelectData):
        return self._zoom_at(1, views, which, layer, centre, width, invert, factor, focus, evt)

    def _zoom_at(self, pane, views, which, layer, centre, width, invert, factor, focus, evt):
        """A click centres the zoom there (and zooms in 2x if not zoomed yet); both views follow."""
        view = hanging(views, which)[pane]
        if view is None or not evt.index:
            return gr.skip()
        h, w = view.pixels.shape
        shown = render(view, "none", centre, width, invert, factor, tuple(focus)).size
        left, top, right, bottom = zoom_box((w, h), factor, tuple(focus)) if factor > 1 else (0, 0, w, h)
        x = left + evt.index[0] / shown[0] * (right - left)
        y = top + evt.index[1] / shown[1] * (bottom - top)
        focus, factor = (x / w, y / h), (factor if factor > 1 else 2)
        return (focus, factor, *self._pictures(views, which, layer, centre, width, invert, factor, focus))
