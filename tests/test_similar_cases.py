"""Similar cases of a draft, on the shipped library and real NIH films: a film the library holds finds
itself first and shares all its labels, a report text is listed once, and an adult PA film is shown
adult PA neighbours before AP or paediatric ones (issue 16, point 6)."""
from __future__ import annotations

import csv
import re

import pytest
from PIL import Image

from tests.conftest import NIH
from xr.retrieve.library import CaseLibrary

FILM = "00000100_000"  # in the shipped library: Atelectasis|Effusion|Infiltration, PA, 60 years
# also in the library: Cardiomegaly, PA, 61 years; its nearest films include an AP film of a 3-year-old
ADULT_PA = "00000075_000"


def _sheet() -> dict[str, tuple[str, int]]:
    """NIH case id -> (view position, age) from the dataset's own labels.csv, not from our library."""
    with open(NIH.parent / "labels.csv", newline="") as f:
        return {f"nih:{r['Image Index'].removesuffix('.png')}": (r["View Position"], int(r["Patient Age"]))
                for r in csv.DictReader(f)}


@pytest.fixture
def similar_of(env, shared, workstation_factory):
    """The similar cases of a library film drafted as an uploaded study (PNG, nothing stored)."""
    ws = workstation_factory(env)
    return lambda film: ws.draft([NIH / f"{film}.png"], "", None).draft.similar_cases


def test_library_film_uploaded_is_its_own_first_case(similar_of):
    similar = similar_of(FILM)
    labels = CaseLibrary().by_id[f"nih:{FILM}"]["labels"]
    first = similar[0]
    assert first.case_id == f"nih:{FILM}" and "image" in first.via
    assert first.similarity >= 0.99 and first.similarities["image"] >= 0.99
    assert labels and sorted(first.shared_findings) == sorted(labels)  # the same film has every finding it has
    assert all(c.similarity <= first.similarity for c in similar[1:])


def test_each_report_text_is_listed_once(env, workstation_factory):
    ws = workstation_factory(env)  # a normal report, which IU holds many times over
    similar = ws.index.similar_cases(text="The heart is normal in size. The mediastinum is unremarkable. "
                                          "The lungs are clear.", k=6)
    texts = [" ".join(re.findall(r"[a-z0-9]+", c.report.lower())) for c in similar if c.case_id.startswith("iu:")]
    assert texts and len(texts) == len(set(texts)), texts


def test_adult_pa_film_gets_adult_pa_image_neighbours_first(similar_of):
    similar, sheet = similar_of(ADULT_PA), _sheet()
    assert similar[0].case_id == f"nih:{ADULT_PA}" and sheet[similar[0].case_id][0] == "PA"
    assert sheet[similar[0].case_id][1] >= 18
    kinds = ["adult PA" if sheet[c.case_id][0] == "PA" and sheet[c.case_id][1] >= 18 else "other"
             for c in similar[1:] if c.case_id in sheet]
    assert "adult PA" in kinds, kinds
    if "other" in kinds:  # none listed after an AP or paediatric film
        assert "adult PA" not in kinds[kinds.index("other"):], kinds


def test_teaching_case_is_drafted_without_itself(env, workstation_factory):
    """A library case opened in the teaching view is drafted from its shipped 512-px copy: with itself
    excluded, its own labels cannot become the prompt and it is not its own neighbour (without the
    exclusion it is among them: the check could fail)."""
    from xr.config import ASSETS

    ws = workstation_factory(env)
    case, film = f"nih:{ADULT_PA}", ASSETS / "case_library" / "thumbs" / f"nih_{ADULT_PA}.jpg"
    assert max(Image.open(film).size) == 512  # sharp enough to read, not an upscaled thumbnail
    plain = ws.draft([film], "", None).draft
    assert case in [c.case_id for c in plain.similar_cases]
    taught = ws.draft([film], "", None, exclude=frozenset({case})).draft
    assert case not in [c.case_id for c in taught.similar_cases]
