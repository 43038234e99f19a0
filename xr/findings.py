"""The finding vocabulary every model and metric shares: the 14 CheXpert observations, plus the NIH
ChestX-ray14 findings that have no CheXpert equivalent, and how each dataset's labels map onto it."""
from __future__ import annotations

CHEXPERT = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)
NIH_EXTRA = ("Emphysema", "Fibrosis", "Hernia")
FINDINGS = CHEXPERT + NIH_EXTRA

NIH_TO_FINDING = {
    "No Finding": "No Finding", "Atelectasis": "Atelectasis", "Cardiomegaly": "Cardiomegaly",
    "Effusion": "Pleural Effusion", "Infiltration": "Lung Opacity", "Mass": "Lung Lesion",
    "Nodule": "Lung Lesion", "Pneumonia": "Pneumonia", "Pneumothorax": "Pneumothorax",
    "Consolidation": "Consolidation", "Edema": "Edema", "Pleural_Thickening": "Pleural Other",
    "Emphysema": "Emphysema", "Fibrosis": "Fibrosis", "Hernia": "Hernia",
}

# How common each finding is in the whole NIH ChestX-ray14 sheet (Data_Entry_2017: 112,120 films of 30,805
# patients; Wang et al., CVPR 2017), mapped onto our vocabulary: the hospital population the shared films were
# drawn from, whose folders here are enriched (one for pneumonia, one for rare findings). The statement policy
# checks its floors at this prevalence as well as at the folders' own. Lung Lesion is Mass plus Nodule (an
# upper bound: a film with both counts twice).
NIH_PREVALENCE = {
    "No Finding": 60361 / 112120, "Atelectasis": 11559 / 112120, "Cardiomegaly": 2776 / 112120,
    "Pleural Effusion": 13317 / 112120, "Lung Opacity": 19894 / 112120, "Lung Lesion": (5782 + 6331) / 112120,
    "Pneumonia": 1431 / 112120, "Pneumothorax": 5302 / 112120, "Consolidation": 4667 / 112120,
    "Edema": 2303 / 112120, "Emphysema": 2516 / 112120, "Fibrosis": 1686 / 112120,
    "Pleural Other": 3385 / 112120, "Hernia": 227 / 112120,
}

# IU X-ray MeSH <major> terms are a head and qualifiers ("Cardiac Shadow/enlarged/mild"). Heads absent
# here (calcified granuloma, degenerative spine, scars in the lung...) are incidental: they neither add a
# finding nor rule out No Finding. The qualifier rules below were set by reading the train split's
# disagreements between these tags and the report text (see docs/evaluation.md, "The labeler").
MESH_TO_FINDING = {
    "normal": "No Finding",
    "Cardiomegaly": "Cardiomegaly",
    "Opacity": "Lung Opacity", "Airspace Disease": "Lung Opacity", "Infiltrate": "Lung Opacity",
    "Nodule": "Lung Lesion", "Mass": "Lung Lesion",
    "Pulmonary Edema": "Edema", "Pulmonary Congestion": "Edema", "Heart Failure": "Edema",
    "Consolidation": "Consolidation", "Pneumonia": "Pneumonia",
    "Pulmonary Atelectasis": "Atelectasis",
    "Pneumothorax": "Pneumothorax", "Hydropneumothorax": "Pneumothorax", "Hemopneumothorax": "Pneumothorax",
    "Pleural Effusion": "Pleural Effusion",
    "Fractures, Bone": "Fracture",
    "Catheters, Indwelling": "Support Devices", "Implanted Medical Device": "Support Devices",
    "Surgical Instruments": "Support Devices", "Tube, Inserted": "Support Devices",
    "Medical Device": "Support Devices", "Stents": "Support Devices",
    "Emphysema": "Emphysema", "Pulmonary Emphysema": "Emphysema", "Bullous Emphysema": "Emphysema",
    "Blister": "Emphysema",  # bullae of the lung
    "Pulmonary Fibrosis": "Fibrosis", "Fibrosis": "Fibrosis",
    "Hernia, Hiatal": "Hernia", "Hernia, Diaphragmatic": "Hernia",
}
_NOT_LUNG = {"ribs", "clavicle", "breast", "sternum", "adipose tissue", "heart", "mitral valve", "spine"}


def mesh_term_finding(term: str) -> str | None:
    """One MeSH major term -> a finding, reading the qualifiers where the head alone is ambiguous."""
    head, *quals = [p.strip() for p in term.split("/")]
    q = {x.lower() for x in quals}
    if "borderline" in q:
        return None
    if head == "Cardiac Shadow":
        return "Cardiomegaly" if "enlarged" in q else None
    if head == "Mediastinum":
        return "Enlarged Cardiomediastinum" if q & {"enlarged", "prominent", "widened"} else None
    if head == "Markings":
        return None if "bronchovascular" in q else "Lung Opacity"
    if head == "Density":
        return None if q & _NOT_LUNG else "Lung Opacity"
    if head in ("Thickening", "Cicatrix", "Calcinosis"):
        return "Pleural Other" if "pleura" in q else None
    return MESH_TO_FINDING.get(head)


def from_nih(labels: str) -> list[str]:
    """'Effusion|Infiltration' -> ['Lung Opacity', 'Pleural Effusion'] in vocabulary order."""
    found = {NIH_TO_FINDING[t] for t in labels.split("|") if t in NIH_TO_FINDING}
    return [f for f in FINDINGS if f in found]


def from_mesh(major_terms: list[str]) -> list[str]:
    found = {f for f in map(mesh_term_finding, major_terms) if f}
    if len(found) > 1:
        found.discard("No Finding")
    return [f for f in FINDINGS if f in found]


def complete(labels: list[str]) -> list[str]:
    """CheXpert's rule: 'No Finding' when no pathology is present (support devices do not count)."""
    if any(f not in ("No Finding", "Support Devices") for f in labels):
        return [f for f in labels if f != "No Finding"]
    return [f for f in FINDINGS if f == "No Finding" or f in labels]
