"""Set-against-set metrics of generated films, on Gaussian features whose answers are known in closed form."""
import numpy as np
import pytest

from xr.evaluate.generation import (
    FeatureError,
    bootstrap_interval,
    frechet_distance,
    kernel_inception_distance,
    memorisation,
    nearest_distances,
    precision_recall,
)


def _normal(n: int, d: int, seed: int, mean: float | np.ndarray = 0.0, scale: float | np.ndarray = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)) * scale + mean


def test_fd_of_a_set_with_itself_is_zero():
    x = _normal(300, 16, 0)
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-8)


def test_fd_grows_with_the_mean_shift():
    real = _normal(500, 8, 0)
    fds = [frechet_distance(real, _normal(500, 8, 1, mean=s)) for s in (0.0, 0.5, 1.0, 2.0)]
    assert fds == sorted(fds) and fds[-1] > 10 * fds[0]


def test_fd_matches_the_closed_form_for_two_gaussians():
    mu = np.array([1.0, -1.0, 0.5, 0.0])
    # identity covariances: FD = ||mu1 - mu2||^2
    assert frechet_distance(_normal(20000, 4, 0), _normal(20000, 4, 1, mean=mu)) == pytest.approx(mu @ mu, abs=0.05)
    # diagonal covariances: FD = ||mu1 - mu2||^2 + sum (s1 - s2)^2 over the standard deviations, here 0 + 2
    fd = frechet_distance(_normal(20000, 2, 2, scale=np.array([1.0, 2.0])), _normal(20000, 2, 3, scale=np.array([2.0, 1.0])))
    assert fd == pytest.approx(2.0, abs=0.1)


def test_fd_is_finite_with_fewer_samples_than_features():
    real, fake = _normal(20, 64, 0), _normal(20, 64, 1, mean=1.0)
    fd = frechet_distance(real, fake)
    assert np.isfinite(fd) and fd > 64  # the mean shift alone is 64
    assert frechet_distance(real, real) == pytest.approx(0, abs=1e-3)


def test_fd_refuses_features_of_different_widths():
    with pytest.raises(FeatureError):
        frechet_distance(_normal(10, 4, 0), _normal(10, 5, 1))


def test_kid_is_about_zero_for_one_distribution_and_positive_for_a_shift():
    real = _normal(400, 16, 0)
    same, _ = kernel_inception_distance(real, _normal(400, 16, 1), subsets=20, subset_size=200)
    shifted, std = kernel_inception_distance(real, _normal(400, 16, 2, mean=0.5), subsets=20, subset_size=200)
    assert abs(same) < 0.05
    assert shifted > 0.5 and shifted > 20 * abs(same) and std < shifted


def test_precision_recall_of_identical_sets_is_one():
    x = _normal(200, 8, 0)
    assert precision_recall(x, x) == (1.0, 1.0)


def test_precision_of_a_far_fake_set_is_zero():
    assert precision_recall(_normal(200, 8, 0), _normal(200, 8, 1, mean=50.0)) == (0.0, 0.0)


def test_a_fake_set_covering_half_the_modes_has_high_precision_and_half_recall():
    centres = np.eye(4) * 100  # four modes far apart; the fakes come from the first two only
    real = np.concatenate([_normal(200, 4, i, mean=c) for i, c in enumerate(centres)])
    fake = np.concatenate([_normal(200, 4, 10 + i, mean=c) for i, c in enumerate(centres[:2])])
    precision, recall = precision_recall(real, fake)
    assert precision > 0.9  # k-NN balls of a finite sample never cover all of its own distribution
    assert 0.4 < recall <= 0.5


def test_nearest_distances_skip_self_and_find_copies():
    train = _normal(100, 8, 0)
    own = nearest_distances(train, train, exclude_self=True)
    assert own.shape == (100,) and (own > 0).all()
    assert (nearest_distances(train, train) == 0).all()
    query = np.concatenate([train[[7]], _normal(5, 8, 1)])
    d = nearest_distances(query, train)
    assert d[0] == 0 and (d[1:] > 0).all()


def test_memorisation_flags_copied_training_films():
    train, heldout = _normal(200, 8, 0), _normal(50, 8, 1)
    generated = np.concatenate([_normal(47, 8, 2), train[[3, 30, 90]]])
    report = memorisation(nearest_distances(generated, train), nearest_distances(heldout, train))
    assert report["closer_than_any_heldout"] >= 3
    assert report["share_below_heldout_5th_percentile"] >= 3 / 50
    assert report["generated_median"] == pytest.approx(report["heldout_median"], rel=0.3)


def test_memorisation_counts():
    report = memorisation(np.array([0.0, 0.5, 5.0, 30.0]), np.arange(1.0, 21.0))
    assert report == {"generated_median": 2.75, "heldout_median": 10.5, "closer_than_any_heldout": 2,
                      "share_below_heldout_5th_percentile": 0.5}  # 5th percentile of 1..20 is 1.95


def test_bootstrap_interval_contains_the_point_estimate():
    real, fake = _normal(300, 2, 0), _normal(300, 2, 1, mean=np.array([1.0, 0.0]))
    lo, hi = bootstrap_interval(frechet_distance, real, fake, resamples=100)
    assert lo <= frechet_distance(real, fake) <= hi
    assert 0 < lo < hi < 2  # FD is about 1, not degenerate, not unbounded
