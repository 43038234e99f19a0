"""Generated films against real ones, as sets of feature vectors ((n, d) arrays from an image encoder).

Frechet distance and KID say how far the two distributions are apart; precision and recall say whether
the gap is fakes that look like no real film (precision) or real films that no fake resembles (recall);
nearest distances to the training films say whether the generator copies them. FD and KID depend on the
set sizes: compare values only at equal n, and quote a bootstrap interval with them.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from xr.errors import UserError

_BLOCK = 1024  # query rows per distance block: a (1024, n) float64 block, not an (n, n) matrix


class FeatureError(UserError):
    """Feature arrays that cannot be compared (wrong shape, too few rows)."""


def _features(x: np.ndarray, name: str, min_rows: int = 2) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < min_rows:
        raise FeatureError(f"{name} features must be an (n, d) array with n >= {min_rows}, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise FeatureError(f"{name} features contain NaN or infinity")
    return x


def _pair(real: np.ndarray, fake: np.ndarray, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    real, fake = _features(real, "real", min_rows), _features(fake, "fake", min_rows)
    if real.shape[1] != fake.shape[1]:
        raise FeatureError(f"real and fake features differ in width ({real.shape[1]} vs {fake.shape[1]})")
    return real, fake


def _psd_sqrt(s: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    """||mu_r - mu_f||^2 + tr(S_r + S_f - 2 (S_r S_f)^1/2), in float64.

    MONAI 1.6's get_fid_score computes this with scipy.linalg.sqrtm, and scipy is not a dependency here
    (MONAI only imports it optionally), so the trace of the root is taken another exact way. With fewer
    films than features (the usual case here: ~150 films, 2048 features) S_r = A A^T and S_f = B B^T for
    the centred, scaled (d, n) feature matrices, and the non-zero eigenvalues of S_r S_f are the squared
    singular values of the small (n_r, n_f) matrix A^T B: the trace is their sum, one small SVD instead
    of two (d, d) eigendecompositions (which a bootstrap repeats hundreds of times). Otherwise the
    eigenvalues of S_r^1/2 S_f S_r^1/2 (those of S_r S_f, real and non-negative) by eigh. Either way it
    matches MONAI with scipy to ~1e-6; with n < d the value is mostly the covariances' estimation bias,
    so it means something only against another FD at the same n."""
    r, f = (torch.from_numpy(a) for a in _pair(real, fake))
    diff = r.mean(0) - f.mean(0)
    a, b = (r - r.mean(0)) / max(1, len(r) - 1) ** 0.5, (f - f.mean(0)) / max(1, len(f) - 1) ** 0.5  # (n, d)
    if min(len(r), len(f)) < r.shape[1]:
        tr_covmean = torch.linalg.svdvals(a @ b.T).sum()
    else:
        s_r, s_f = a.T @ a, b.T @ b
        root = _psd_sqrt(s_r)
        tr_covmean = torch.linalg.eigvalsh(root @ s_f @ root).clamp(min=0).sqrt().sum()
    return float(diff @ diff + (a * a).sum() + (b * b).sum() - 2 * tr_covmean)


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, subsets: int = 50, subset_size: int | None = None,
                              seed: int = 0) -> tuple[float, float]:
    """(mean, std over subsets) of the unbiased MMD^2 with the kernel (x.y/d + 1)^3 (Binkowski et al. 2018).

    Unlike FD it has an unbiased estimator, so two samples of one distribution score about 0 at any n
    (slightly negative values are then expected), and subsets bound the cost at O(subset_size^2)."""
    real, fake = _pair(real, fake)
    m = subset_size or min(len(real), len(fake))
    if not 2 <= m <= min(len(real), len(fake)):
        raise FeatureError(f"subset_size must lie between 2 and the smaller set's size {min(len(real), len(fake))}, got {m}")
    d, rng = real.shape[1], np.random.default_rng(seed)
    scores = []
    for _ in range(subsets):
        x, y = real[rng.choice(len(real), m, replace=False)], fake[rng.choice(len(fake), m, replace=False)]
        k_xx, k_yy, k_xy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        scores.append(within - 2 * k_xy.mean())
    return float(np.mean(scores)), float(np.std(scores))


def bootstrap_interval(fn: Callable[[np.ndarray, np.ndarray], float], real: np.ndarray, fake: np.ndarray,
                       resamples: int = 200, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of fn(real, fake) over resamples of both sets with replacement.

    Meant for the small sets a radiologist's review allows (tens to hundreds of films), where the metric
    moves by more than the gaps between models. It is rough there: a resample repeats films, which shrinks
    the spread FD sees (so it raises FD's small-n bias) and puts zero-distance pairs into KID's within-set
    terms and precision/recall's neighbour radii, so the interval can sit off the point estimate."""
    real, fake = _pair(real, fake)
    rng = np.random.default_rng(seed)
    values = [fn(real[rng.integers(0, len(real), len(real))], fake[rng.integers(0, len(fake), len(fake))])
              for _ in range(resamples)]
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0))


def _knn_radius(x: np.ndarray, k: int) -> np.ndarray:
    out = np.empty(len(x))
    for i in range(0, len(x), _BLOCK):
        d = _distances(x[i:i + _BLOCK], x)
        d[np.arange(len(d)), np.arange(i, i + len(d))] = np.inf  # a sample is not its own neighbour
        out[i:i + _BLOCK] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return out


def _covered(query: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    inside = [(_distances(query[i:i + _BLOCK], centres) <= radii).any(1) for i in range(0, len(query), _BLOCK)]
    return float(np.concatenate(inside).mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019): each set's manifold is the union of balls
    reaching each sample's k-th nearest other sample. FD and KID mix fidelity and coverage into one
    number; these separate them (precision: fakes inside the real manifold; recall: reals inside the fake)."""
    real, fake = _pair(real, fake, min_rows=k + 1)
    return _covered(fake, real, _knn_radius(real, k)), _covered(real, fake, _knn_radius(fake, k))


def nearest_distances(query: np.ndarray, reference: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """Euclidean distance from each query row to its nearest reference row; with `exclude_self`, query
    and reference are one set and a row's own match is skipped.

    The neighbour is found from the fast ||a||^2 + ||b||^2 - 2ab form, then its distance is taken from
    the difference itself, so a copied training film reads exactly 0, not round-off."""
    query = _features(query, "query", min_rows=1)
    reference = _features(reference, "reference", min_rows=2 if exclude_self else 1)
    if query.shape[1] != reference.shape[1] or (exclude_self and query.shape != reference.shape):
        raise FeatureError(f"query {query.shape} and reference {reference.shape} cannot be compared"
                           + (" as one set" if exclude_self else ""))
    nearest = np.empty(len(query), dtype=np.intp)
    for i in range(0, len(query), _BLOCK):
        d = _distances(query[i:i + _BLOCK], reference)
        if exclude_self:
            d[np.arange(len(d)), np.arange(i, i + len(d))] = np.inf
        nearest[i:i + _BLOCK] = d.argmin(1)
    return np.linalg.norm(query - reference[nearest], axis=1)


def memorisation(generated_to_train: np.ndarray, heldout_to_train: np.ndarray) -> dict:
    """Generated films' nearest-training distances against held-out real films' (the distances a film
    the model never saw has): a generator that copies puts films closer to the training set than any
    held-out film comes, and more than 5 % of them below the held-out 5th percentile."""
    gen, held = np.asarray(generated_to_train, dtype=float).ravel(), np.asarray(heldout_to_train, dtype=float).ravel()
    if len(gen) == 0 or len(held) == 0:
        raise FeatureError("memorisation needs at least one generated and one held-out distance")
    return {
        "generated_median": float(np.median(gen)),
        "heldout_median": float(np.median(held)),
        "closer_than_any_heldout": int((gen < held.min()).sum()),
        "share_below_heldout_5th_percentile": float((gen < np.percentile(held, 5)).mean()),
    }
