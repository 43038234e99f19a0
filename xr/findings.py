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

# IU X-ray MeSH <major> heads (text before the first '/'). Terms absent here (calcified granuloma,
# degenerative spine, scars...) are incidental: they neither add a finding nor rule out No Finding.
MESH_TO_FINDING = {
    "normal": "No Finding",
    "Cardiomegaly": "Cardiomegaly", "Heart Failure": "Cardiomegaly",
    "Mediastinum": "Enlarged Cardiomediastinum", "Cardiac Shadow": "Enlarged Cardiomediastinum",
    "Opacity": "Lung Opacity", "Airspace Disease": "Lung Opacity", "Infiltrate": "Lung Opacity",
    "Density": "Lung Opacity", "Markings": "Lung Opacity",
    "Nodule": "Lung Lesion", "Mass": "Lung Lesion",
    "Pulmonary Edema": "Edema", "Pulmonary Congestion": "Edema",
    "Consolidation": "Consolidation", "Pneumonia": "Pneumonia",
    "Pulmonary Atelectasis": "Atelectasis", "Pneumothorax": "Pneumothorax",
    "Pleural Effusion": "Pleural Effusion", "Thickening": "Pleural Other",
    "Fractures, Bone": "Fracture",
    "Catheters, Indwelling": "Support Devices", "Implanted Medical Device": "Support Devices",
    "Surgical Instruments": "Support Devices", "Tube, Inserted": "Support Devices",
    "Medical Device": "Support Devices", "Stents": "Support Devices",
    "Emphysema": "Emphysema", "Pulmonary Emphysema": "Emphysema", "Pulmonary Fibrosis": "Fibrosis",
    "Hernia, Hiatal": "Hernia",
}


def from_nih(labels: str) -> list[str]:
    """'Effusion|Infiltration' -> ['Lung Opacity', 'Pleural Effusion'] in vocabulary order."""
    found = {NIH_TO_FINDING[t] for t in labels.split("|") if t in NIH_TO_FINDING}
    return [f for f in FINDINGS if f in found]


def from_mesh(major_terms: list[str]) -> list[str]:
    found = {MESH_TO_FINDING[t.split("/")[0].strip()] for t in major_terms
             if t.split("/")[0].strip() in MESH_TO_FINDING}
    if len(found) > 1:
        found.discard("No Finding")
    return [f for f in FINDINGS if f in found]


def complete(labels: list[str]) -> list[str]:
    """CheXpert's rule: 'No Finding' when no pathology is present (support devices do not count)."""
    if any(f not in ("No Finding", "Support Devices") for f in labels):
        return [f for f in labels if f != "No Finding"]
    return [f for f in FINDINGS if f == "No Finding" or f in labels]
