"""Films for the image generator, each with its view, patient, findings and report, from the layouts we
have: NIH ChestX-ray14 (frontal films with labels, no reports), covid_cxr_views (frontal and lateral films
of the same patients, one pneumonia label each) and IU X-ray / MIMIC-CXR-JPG studies (reports; which film
is which view the caller tells from the pixels, as the drafter does). A patient's films share a group, and
a group falls wholly on one side of the held-out split (xr.data.split)."""
from __future__ import annotations

import csv
import gzip
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from xr.data.layouts import load_cases
from xr.data.nih import load_nih
from xr.data.split import is_validation
from xr.errors import UserError
from xr.views import FRONTAL, LATERAL, VIEWS, view_from_position
from xr.report import compose_report

@dataclass(frozen=True)
class LabelledFilm:
    """One film of a dataset as every trainer reads it (finding head, view head, film generator)."""
    path: Path
    group: str  # the patient (NIH, covid_cxr_views) or study (IU, MIMIC): a pair's unit
    view: str | None  # FRONTAL or LATERAL; None where the layout does not record it
    labels: tuple[str, ...] = ()  # in the xr.findings vocabulary
    report: str = ""  # "" where the source has none
    source: str = ""

    @property
    def held_out(self) -> bool:
        return is_validation(self.group)

    def seen_as(self, view: str) -> LabelledFilm:
        return replace(self, view=view)


def nih_films(root: Path) -> list[LabelledFilm]:
    return [LabelledFilm(n.path, f"nih:{n.patient_id}", FRONTAL, tuple(n.labels), "", "nih") for n in load_nih(root)
            if n.path.exists()]


def view_pair_films(root: Path) -> list[LabelledFilm]:
    """covid_cxr_views: every finding there is a pneumonia (COVID-19, bacterial, viral, lipoid...)."""
    with open(root / "views.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [LabelledFilm(root / "images" / r["image"], f"views:{r['patient']}", r["view"], ("Pneumonia",), "", "covid_cxr_views")
            for r in rows if r["view"] in VIEWS and (root / "images" / r["image"]).exists()]


# Each layout's sheet of DICOM headers, where it ships one: (file, image id column, view column)
VIEW_SHEETS = (("nlmcxr_dicom_metadata.csv.gz", "imageid", "View Position"),  # IU X-ray (Open-i)
               ("mimic-cxr-2.0.0-metadata.csv.gz", "dicom_id", "ViewPosition"),
               ("mimic-cxr-2.0.0-metadata.csv", "dicom_id", "ViewPosition"))


def recorded_views(root: Path) -> dict[str, str]:
    """Image id (the file's stem) -> FRONTAL or LATERAL from the layout's header sheet; only those two
    columns are read."""
    for name, key, column in VIEW_SHEETS:
        path = root / name
        if path.is_file():
            with (gzip.open(path, "rt", newline="") if name.endswith(".gz") else open(path, newline="")) as f:
                views = {r[key]: view_from_position(r.get(column)) for r in csv.DictReader(f)}
            return {k: v for k, v in views.items() if v in VIEWS}
    return {}


def study_films(root: Path) -> list[LabelledFilm]:
    """Every study with images of an IU X-ray or MIMIC-CXR-JPG folder, all splits (the held-out split here
    is by patient, the same rule for every source); views from the layout's header sheet where it has one."""
    name, cases = load_cases(root)
    views = recorded_views(root)
    return [LabelledFilm(p, f"{name}:{c.id}", views.get(p.stem), c.labels,
                 compose_report(c.findings, c.impression), name)
            for c in cases for p in c.image_paths]


@dataclass(frozen=True)
class Layout:
    read: Callable[[Path], list[LabelledFilm]]
    needs: str | None  # the file that tells a folder of this layout, where there is one


# The dataset layouts every trainer reads films from, by name: a layout is a function from a folder to its
# LabelledFilms and one line here.
LAYOUTS: dict[str, Layout] = {
    "nih": Layout(nih_films, "labels.csv"),  # NIH ChestX-ray14: labels.csv + images/
    "views": Layout(view_pair_films, "views.csv"),  # covid_cxr_views: frontal and lateral films of one patient
    "studies": Layout(study_films, None),  # IU X-ray or MIMIC-CXR-JPG studies with their reports
}


def load_films(**roots: Path | str | None) -> list[LabelledFilm]:
    """The films of each folder given by its layout's name (`load_films(nih=A, views=B)`), in LAYOUTS' order."""
    unknown = set(roots) - set(LAYOUTS)
    if unknown:
        raise UserError(f"no dataset layout named {', '.join(sorted(unknown))}: one of {', '.join(LAYOUTS)}")
    out: list[LabelledFilm] = []
    for name, layout in LAYOUTS.items():
        root = roots.get(name)
        if root is None:
            continue
        if layout.needs and not (Path(root) / layout.needs).is_file():
            raise UserError(f"{Path(root).name}: no {layout.needs} there (not a {name} folder)")
        try:
            out += layout.read(Path(root))
        except FileNotFoundError as e:
            raise UserError(str(e)) from None
    return out


def pairs(films: list[LabelledFilm]) -> list[tuple[LabelledFilm, LabelledFilm]]:
    """(frontal, lateral) of each group that has both: the first of each view."""
    first: dict[tuple[str, str], LabelledFilm] = {}
    for f in films:
        if f.view is not None:
            first.setdefault((f.group, f.view), f)
    return [(first[g, FRONTAL], first[g, LATERAL]) for g, v in first if v == FRONTAL and (g, LATERAL) in first]
