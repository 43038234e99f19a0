"""Window/level and zoom of the shared image viewer, on real pixels."""
from __future__ import annotations

import numpy as np

from xr.result import DraftResult, rle
from xr.ui.viewer import DISPLAY, FLAT_FUSION, FUSION, ShownFilm, Viewer, hanging, render, views_of
from xr.visualize import window_level, zoom_box


def test_window_level_maps_the_window_onto_black_to_white():
    px = np.arange(256, dtype=np.uint8).reshape(16, 16)
    out = window_level(px, centre=100, width=50)
    assert out[px <= 75].max() == 0 and out[px >= 125].min() == 255
    assert 100 <= out[px == 100][0] <= 155  # the centre is mid-grey
    assert np.abs(window_level(px, 127.5, 255).astype(int) - px).max() <= 1  # the full window changes nothing
    assert window_level(px, 128, 255, invert=True)[0, 0] == 255


def test_zoom_box_stays_inside_the_image():
    assert zoom_box((1000, 800), 2, (0.5, 0.5)) == (250, 200, 750, 600)
    assert zoom_box((1000, 800), 4, (0.0, 0.0)) == (0, 0, 250, 200)  # a corner: the crop stops at the edge
    assert zoom_box((1000, 800), 4, (1.0, 1.0)) == (750, 600, 1000, 800)
    assert zoom_box((1000, 800), 1, (0.9, 0.1)) == (0, 0, 1000, 800)


def test_render_zooms_into_the_clicked_region_with_overlays(nih_pixels):
    mask = np.zeros((512, 512), bool)
    mask[100:400, 60:240] = True
    view = ShownFilm(nih_pixels, "View 1", grid=np.linspace(0, 1, 256).reshape(16, 16).tolist(), mask=rle(mask))
    full = render(view, "none", 128, 255, False, 1, (0.5, 0.5))
    assert full.size == (512, 512)  # a small film is not blown up (blurry); the browser fits it to the pane
    big = ShownFilm(np.kron(nih_pixels, np.ones((4, 4), np.uint8)), "View 1")
    assert max(render(big, "none", 128, 255, False, 1, (0.5, 0.5)).size) == DISPLAY
    zoomed = np.asarray(render(view, "none", 128, 255, False, 4, (0.25, 0.25)))
    h, w = nih_pixels.shape
    left, top, right, bottom = zoom_box((w, h), 4, (0.25, 0.25))
    assert (right - left, bottom - top) == (w // 4, h // 4)
    region, elsewhere = nih_pixels[top:bottom, left:right], nih_pixels[h // 2:, w // 2:]
    assert abs(zoomed[..., 0].mean() - region.mean()) < 2
    assert abs(region.mean() - elsewhere.mean()) > 10  # so the check above could fail
    heat = np.asarray(render(view, "fusion weights", 128, 255, False, 1, (0.5, 0.5))).astype(int)
    assert (heat[..., 0] - heat[..., 2]).mean() != 0  # coloured, not grey
    lungs = np.asarray(render(view, "lung mask", 128, 255, False, 1, (0.5, 0.5))).astype(int)
    assert (lungs[..., 1] > lungs[..., 0]).mean() > 0.05  # green fill over the mask


def test_views_hang_frontal_left_lateral_right_and_laterals_have_no_lung_mask(nih_pixels):
    """Issue 16.8/16.9: the hanging protocol puts the frontal view first with the lateral beside it, and
    the lung mask (a frontal-film model) is not drawn on a lateral view."""
    mask = rle(np.ones((512, 512), bool))
    evidence = {"Cardiomegaly": np.eye(16).tolist(), "Pleural Effusion": np.ones((16, 16)).tolist()}
    draft_views = [{"index": 0, "view": "lateral", "lung_mask": mask},
                   {"index": 1, "view": "frontal", "lung_mask": mask, "measurements": {"lung_border_ratio": 0.45},
                    "evidence": evidence}]
    draft = DraftResult.from_json({"report": "", "findings": {}, "views": draft_views, "similar_cases": [], "model": "m",
                                   "model_version": "1", "fusion_weights": {"0": [[0.5]], "1": [[0.5]]}})
    lateral, frontal = nih_pixels[:, ::-1].copy(), nih_pixels
    views = views_of([lateral, frontal], draft)
    assert [v.view for v in views] == ["frontal", "lateral"]
    assert views[0].mask == mask and views[1].mask is None
    assert "0.45" not in views[0].caption  # the lung-border heart-size estimate is not calibrated: not shown as a CTR
    assert views[0].evidence == ("Cardiomegaly", evidence["Cardiomegaly"]) and views[1].evidence is None
    shaded = np.asarray(render(views[0], "evidence", 128, 255, False, 1, (0.5, 0.5))).astype(int)
    assert (shaded[..., 0] - shaded[..., 2]).std() > 5  # the diagonal map drawn, not a flat wash
    assert hanging(views, "1") == (views[0], views[1]) and hanging(views, "2") == (views[1], views[0])
    assert hanging(views[:1], "1") == (views[0], None)
    plain = np.asarray(render(views[1], "none", 128, 255, False, 1, (0.5, 0.5)))
    assert np.array_equal(np.asarray(render(views[1], "lung mask", 128, 255, False, 1, (0.5, 0.5))), plain)


def test_the_fusion_map_is_explained_where_it_varies_and_called_flat_where_it_does_not(nih_pixels):
    """Issue 33: the viewer said the map was flat whatever the weights; now the map's own spread decides."""
    flat = np.full((16, 16), 0.99)
    flat[3, 4] = 0.5  # one odd region does not make a map
    varied = np.linspace(0.2, 0.9, 256).reshape(16, 16)

    def caption(*grids):
        views = [ShownFilm(nih_pixels, f"View {i + 1}", grid=None if g is None else g.tolist()) for i, g in enumerate(grids)]
        return Viewer._pictures(views, "1", "fusion weights", 128, 255, False, 1, (0.5, 0.5))[2]

    assert FLAT_FUSION in caption(flat) and FUSION not in caption(flat)
    assert FUSION in caption(varied) and FUSION in caption(varied, flat) and FLAT_FUSION not in caption(varied)
    assert "No fusion-weight map" in caption(None)
