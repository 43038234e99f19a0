"""One draft against one reference, for teaching: how close the words are (BLEU-4, ROUGE-L on the
field's normalised text) and which findings agree, were missed or were added. CIDEr needs a corpus
and METEOR a Java process per call, so neither is shown per case."""
from __future__ import annotations

import contextlib
import io

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.rouge.rouge import Rouge

from xr.evaluate.labeler import POSITIVE, UNCERTAIN, label_report, positives
from xr.normalize import normalize


def case_metrics(draft: str, reference: str = "", reference_labels: list[str] | None = None) -> dict:
    """Text scores need a reference report; finding agreement uses the reference's labels when given
    (NIH cases have labels, no report), else the labeler's reading of the reference."""
    out: dict = {}
    if reference.strip():
        gts, res = {0: [normalize(reference)]}, {0: [normalize(draft)]}
        with contextlib.redirect_stdout(io.StringIO()):  # pycocoevalcap prints its internals
            bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        out["BLEU-4"] = float(bleu[3])
        out["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    truth = set(reference_labels if reference_labels is not None else positives(label_report(reference)))
    # a hedge ("cannot be excluded") is a claim the reader must act on: a false one counts as added
    said = {f for f, v in label_report(draft).items() if v in (POSITIVE, UNCERTAIN)}
    truth.discard("No Finding")
    said.discard("No Finding")
    tp = len(truth & said)
    out["agree"], out["missed"], out["added"] = sorted(truth & said), sorted(truth - said), sorted(said - truth)
    out["finding_f1"] = 1.0 if not (truth or said) else 2 * tp / (len(truth) + len(said))
    return out
