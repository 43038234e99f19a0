"""The image viewer every workspace shares: one view at a time, window/level, zoom by clicking where to
look, and the fusion-weight heatmap or the lung mask on top. Rendering runs on the server from the
stored 8-bit pixels, so what a radiologist sees is what the models saw."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import numpy as np
from PIL import Image

from xr.draft.result import unrle
from xr.visualize import mask_overlay, overlay, window_level, zoom_box

OVERLAYS = ("none", "heatmap", "lung mask")
DISPLAY = 768  # longest side of the picture sent to the browser


@dataclass
class View:
    pixels: np.ndarray  # uint8 HxW as stored
    caption: str
    grid: list[list[float]] | None = None  # fusion weights over the image's regions
    mask: dict | None = None  # lung mask, run-length encoded


def views_of(pixels: list[np.ndarray], draft_views: list[dict], fusion_weights: dict) -> list[View]:
    """Viewer views from a draft's JSON (`Draft.to_json()` or a stored draft row)."""
    out = []
    for i, px in enumerate(pixels):
        v = draft_views[i] if i < len(draft_views) else {}
        caption = f"View {i + 1}: {v.get('view', 'unknown')}"
        ctr = (v.get("measurements") or {}).get("ctr")
        if ctr is not None:
            caption += f" · CTR estimate {ctr:.2f} (from lung borders; reads lower than a measured CTR)"
        out.append(View(px, caption, fusion_weights.get(str(i)), v.get("lung_mask")))
    return out


def stored_views(study: dict) -> list[View]:
    """Viewer views of a stored study (`store.study_view`): its images with its latest draft's overlays."""
    d = study["draft"] or {}
    pixels = [np.asarray(Image.open(im["path"]).convert("L")) for im in study["images"]]
    return views_of(pixels, d.get("views", []), d.get("fusion_weights", {}))


def render(view: View, layer: str, centre: float, width: float, invert: bool, factor: float,
           focus: tuple[float, float]) -> Image.Image:
    grey = window_level(view.pixels, centre, width, invert)
    side = max(grey.shape) if factor > 1 else DISPLAY  # zoomed: overlay at full resolution, then crop
    if layer == "heatmap" and view.grid is not None:
        picture = overlay(grey, view.grid, max_side=side)
    elif layer == "lung mask" and view.mask is not None:
        picture = mask_overlay(grey, unrle(view.mask), max_side=side)
    else:
        picture = Image.fromarray(grey).convert("RGB")
    if factor > 1:
        picture = picture.crop(zoom_box(picture.size, factor, focus))
    picture.thumbnail((DISPLAY, DISPLAY))
    if max(picture.size) < DISPLAY:  # enlarge a zoomed crop or a small image to the viewer's size
        scale = DISPLAY / max(picture.size)
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.LANCZOS)
    return picture


class Viewer:
    """Build inside a Blocks context; `show(views)` returns the updates that load a new set of views."""

    def __init__(self, label: str = "Images") -> None:
        self.views = gr.State([])
        self.focus = gr.State((0.5, 0.5))
        with gr.Group():
            with gr.Row():
                self.which = gr.Radio([], label="View", scale=2)
                self.layer = gr.Radio(list(OVERLAYS), value="heatmap", label="Overlay",
                                      info="heatmap: fusion weight per region (red = high)", scale=3)
            self.image = gr.Image(label=label, type="pil", interactive=False, height=520,
                                  buttons=["fullscreen"], elem_classes="xr-viewer")
            self.caption = gr.Markdown()
            with gr.Row():
                self.centre = gr.Slider(0, 255, value=128, step=1, label="Window centre (level)")
                self.width = gr.Slider(1, 255, value=255, step=1, label="Window width")
                self.zoom = gr.Slider(1, 6, value=1, step=0.5, label="Zoom (click the image to centre)")
            with gr.Row():
                self.invert = gr.Checkbox(label="Invert", value=False)
                self.reset = gr.Button("Reset window and zoom", size="sm")
        controls = [self.views, self.which, self.layer, self.centre, self.width, self.invert, self.zoom, self.focus]
        for c in (self.which, self.layer, self.invert):
            c.change(self._draw, controls, [self.image, self.caption], api_visibility="private")
        for c in (self.centre, self.width, self.zoom):
            c.release(self._draw, controls, [self.image, self.caption], api_visibility="private")
        self.image.select(self._click, controls, [self.focus, self.zoom, self.image, self.caption],
                          api_visibility="private")
        self.reset.click(lambda: (128, 255, 1, False, (0.5, 0.5)), None,
                         [self.centre, self.width, self.zoom, self.invert, self.focus],
                         api_visibility="private").then(self._draw, controls, [self.image, self.caption],
                                                        api_visibility="private")

    @property
    def outputs(self) -> list:
        return [self.views, self.which, self.focus, self.image, self.caption, self.centre, self.width, self.invert,
                self.zoom]

    def show(self, views: list[View], layer: str = "heatmap") -> tuple:
        """Values for `outputs`: the first view at the default window, not zoomed."""
        choices = [f"{i + 1}" for i in range(len(views))]
        default = (128, 255, False, 1)
        if not views:
            return [], gr.update(choices=[], value=None), (0.5, 0.5), None, "", *default
        picture = render(views[0], layer, 128, 255, False, 1, (0.5, 0.5))
        return views, gr.update(choices=choices, value=choices[0]), (0.5, 0.5), picture, views[0].caption, *default

    @staticmethod
    def _current(views: list[View], which: str | None) -> View | None:
        if not views:
            return None
        i = int(which) - 1 if which else 0
        return views[min(max(i, 0), len(views) - 1)]

    def _draw(self, views, which, layer, centre, width, invert, factor, focus):
        view = self._current(views, which)
        if view is None:
            return None, ""
        return render(view, layer, centre, width, invert, factor, tuple(focus)), view.caption

    def _click(self, views, which, layer, centre, width, invert, factor, focus, evt: gr.SelectData):
        """A click centres the zoom there (and zooms in 2x if not zoomed yet)."""
        view = self._current(views, which)
        if view is None or not evt.index:
            return focus, factor, gr.update(), gr.update()
        h, w = view.pixels.shape
        shown = render(view, "none", centre, width, invert, factor, tuple(focus)).size
        left, top, right, bottom = zoom_box((w, h), factor, tuple(focus)) if factor > 1 else (0, 0, w, h)
        x = left + evt.index[0] / shown[0] * (right - left)
        y = top + evt.index[1] / shown[1] * (bottom - top)
        focus, factor = (x / w, y / h), (factor if factor > 1 else 2)
        return (focus, factor, render(view, layer, centre, width, invert, factor, focus), view.caption)
