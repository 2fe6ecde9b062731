import math

import numpy as np
import pytest

from pcrl_lib.metrics import BRATS_REGIONS, auroc_per_class, bootstrap_ci, dice, dice_per_region


def test_auroc_hand_values_and_mean():
    y = np.array([[0, 1], [0, 0], [1, 1], [1, 0]])
    s = np.array([[0.1, 0.9], [0.4, 0.2], [0.35, 0.3], [0.8, 0.4]])
    out = auroc_per_class(y, s, ["a", "b"])
    # class a: positives {0.35, 0.8} vs negatives {0.1, 0.4}: 3 of 4 pairs ordered -> 0.75
    # class b: positives {0.9, 0.3} vs negatives {0.2, 0.4}: 3 of 4 -> 0.75
    assert out["a"] == pytest.approx(0.75) and out["b"] == pytest.approx(0.75)
    assert out["mean"] == pytest.approx(0.75) and out["undefined"] == []


def test_auroc_undefined_class_is_reported_not_dropped():
    y = np.array([[0, 1], [1, 1], [0, 1]])
    out = auroc_per_class(y, np.random.default_rng(0).random((3, 2)))
    assert math.isnan(out["1"]) and out["undefined"] == ["1"]
    assert out["mean"] == out["0"]


def test_auroc_bad_input():
    with pytest.raises(ValueError, match="differ"):
        auroc_per_class(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="0 or 1"):
        auroc_per_class(np.array([[2], [0]]), np.zeros((2, 1)))
    with pytest.raises(ValueError, match="NaN"):
        auroc_per_class(np.array([[1], [0]]), np.array([[np.nan], [0.0]]))


def test_dice_hand_values():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 voxels
    b[1:3] = True  # 8 voxels, 4 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0 and dice(~a & a, ~a & a) == 1.0
    with pytest.raises(ValueError, match="differ"):
        dice(a, b[:2])


def test_brats_regions_are_nested():
    target = np.array([0, 1, 2, 4, 4, 2])
    pred = np.array([0, 1, 2, 4, 2, 0])
    out = dice_per_region(pred, target, BRATS_REGIONS)
    # WT {1,2,4}: pred {1,2,3,4}, target {1,2,3,4,5}: 2*4/9
    assert out["WT"] == pytest.approx(8 / 9)
    # TC {1,4}: pred {1,3}, target {1,3,4}: 2*2/5
    assert out["TC"] == pytest.approx(4 / 5)
    # ET {4}: pred {3}, target {3,4}: 2/3
    assert out["ET"] == pytest.approx(2 / 3)
    assert out["mean"] == pytest.approx((8 / 9 + 4 / 5 + 2 / 3) / 3)


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_n():
    rng = np.random.default_rng(0)

    def mean(x):
        return float(np.mean(x))

    small, large = rng.normal(1.0, 1.0, 30), rng.normal(1.0, 1.0, 3000)
    lo_s, hi_s = bootstrap_ci(mean, small, n_boot=500)
    lo_l, hi_l = bootstrap_ci(mean, large, n_boot=500)
    assert lo_s < mean(small) < hi_s and lo_l < mean(large) < hi_l
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5
    assert bootstrap_ci(mean, small, n_boot=200, seed=1) == bootstrap_ci(
        mean, small, n_boot=200, seed=1
    )


def test_bootstrap_of_an_undefined_metric_is_nan():
    def always_nan(x):
        return float("nan")

    lo, hi = bootstrap_ci(always_nan, np.zeros(5), n_boot=10)
    assert math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError, match="same number"):
        bootstrap_ci(always_nan, np.zeros(5), np.zeros(4))


def test_vectorised_bootstrap_auroc_equals_the_loop_over_resamples():
    from sklearn.metrics import roc_auc_score

    from pcrl_lib.metrics import bootstrap_auroc

    def auroc(t, p):
        return roc_auc_score(t, p) if t.min() != t.max() else np.nan

    rng = np.random.default_rng(0)
    y = (rng.random((60, 3)) < [0.5, 0.1, 0.03]).astype(int)
    s = np.round(rng.random((60, 3)) + 0.5 * y, 1)  # ties
    per_class, mean_ci = bootstrap_auroc(y, s, n_boot=200, seed=4)
    counts = np.random.default_rng(4).multinomial(60, np.full(60, 1 / 60), size=200)
    loop = np.full((200, 3), np.nan)
    for b, cnt in enumerate(counts):
        idx = np.repeat(np.arange(60), cnt)
        loop[b] = [auroc(y[idx, c], s[idx, c]) for c in range(3)]
    for c in range(3):
        v = loop[:, c][np.isfinite(loop[:, c])]
        assert per_class[c] == pytest.approx(tuple(np.quantile(v, [0.025, 0.975])))
    m = np.nanmean(loop, axis=1)
    assert mean_ci == pytest.approx(tuple(np.quantile(m, [0.025, 0.975])))


def test_bootstrap_interval_of_a_mean_has_the_normal_theory_width():
    """The percentile interval of a mean of n cases has half-width 1.96 sd / sqrt(n): a
    bootstrap that resampled n/2 cases would be sqrt(2) wider, a 90 % one 0.84 as wide."""
    x = np.random.default_rng(7).normal(0.0, 1.0, 400)
    lo, hi = bootstrap_ci(lambda v: float(np.mean(v)), x, n_boot=4000, seed=3)
    expected = 1.959964 * np.std(x) / np.sqrt(len(x))
    assert (hi - lo) / 2 == pytest.approx(expected, rel=0.05)
    assert lo < np.mean(x) < hi


def test_bootstrap_auroc_width_matches_delong():
    """The bootstrap interval of an AUROC against DeLong's variance (structural components,
    computed here by hand): the same half-width within 8 %."""
    from pcrl_lib.metrics import bootstrap_auroc

    rng = np.random.default_rng(11)
    y = (rng.random(600) < 0.3).astype(int)
    s = rng.normal(0.0, 1.0, 600) + 1.0 * y
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = wins.mean(axis=1), wins.mean(axis=0)
    se = np.sqrt(v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg))
    (ci,), _ = bootstrap_auroc(y[:, None], s[:, None], n_boot=4000, seed=5)
    assert (ci[1] - ci[0]) / 2 == pytest.approx(1.959964 * se, rel=0.08)
    assert ci[0] < wins.mean() < ci[1]


def test_auroc_of_one_class_takes_vectors_and_column_scores():
    y = np.array([0, 1, 1, 0])
    s = np.array([0.1, 0.9, 0.3, 0.4])  # 3 of 4 pairs ordered
    assert auroc_per_class(y, s)["0"] == pytest.approx(0.75)
    assert auroc_per_class(y, s[:, None])["0"] == pytest.approx(0.75)


def test_auroc_with_every_class_undefined_has_a_nan_mean_and_no_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = auroc_per_class(np.ones((3, 2)), np.zeros((3, 2)), ["a", "b"])
    assert math.isnan(out["mean"]) and out["undefined"] == ["a", "b"]


def test_metric_errors_say_which_function_and_what():
    with pytest.raises(ValueError, match=r"^auroc_per_class: labels must be 0 or 1$"):
        auroc_per_class(np.array([[2], [0]]), np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"^auroc_per_class: scores contain NaN or Inf$"):
        auroc_per_class(np.array([[1], [0]]), np.array([[np.inf], [0.0]]))
    with pytest.raises(ValueError, match=r"^auroc_per_class: 2 names for 3 classes$"):
        auroc_per_class(np.zeros((2, 3)), np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match=r"^bootstrap_ci: give at least one array$"):
        bootstrap_ci(np.mean)
    with pytest.raises(ValueError, match=r"^bootstrap_ci: arrays need the same number of cases$"):
        bootstrap_ci(np.mean, np.zeros(2), np.zeros(3))


def test_bootstrap_defaults_are_1000_resamples_and_seed_0():
    x = np.random.default_rng(1).normal(size=20)
    stat = lambda v: float(np.mean(v))  # noqa: E731
    assert bootstrap_ci(stat, x) == bootstrap_ci(stat, x, n_boot=1000, alpha=0.05, seed=0)
    assert bootstrap_ci(stat, x) != bootstrap_ci(stat, x, n_boot=1001)
    assert bootstrap_ci(stat, x) != bootstrap_ci(stat, x, seed=1)


def test_bootstrap_resamples_every_case():
    # two cases 1 and 0: the resamples hold {1,1}, {1,0} or {0,0}, so the 95 % interval of
    # the mean is [0, 1]; a resampler that never drew the first case would give [0, 0]
    assert bootstrap_ci(lambda v: float(np.mean(v)), np.array([1.0, 0.0])) == (0.0, 1.0)


def test_dice_counts_voxels_not_label_values():
    # any non-zero label is foreground: |P| = 1, |T| = 2, overlap 1 -> 2/3 (not 2*3/(3+2))
    assert dice(np.array([3, 0]), np.array([1, 1])) == pytest.approx(2 / 3)
    assert dice(np.array([1, 0]), np.array([5, 5])) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("scores", "counts"),
    [((3, 2), np.ones((2, 3))), ((3, 1), np.ones(3)), ((3, 1), np.ones((2, 4)))],
    ids=["scores", "counts-1d", "counts-n"],
)
def test_weighted_auroc_refuses_each_mismatch(scores, counts):
    from pcrl_lib.metrics import weighted_auroc

    with pytest.raises(ValueError, match=r"^weighted_auroc: labels \(3, 1\), scores"):
        weighted_auroc(np.array([[0], [1], [1]]), np.zeros(scores), counts)


def test_weighted_auroc_hand_values_one_pair_and_no_positive():
    """Counts (1, 1, 0): one positive (0.9) against one negative (0.2) - AUROC 1; counts
    (1, 0, 1): no positive - NaN, quietly (no warning)."""
    import warnings

    from pcrl_lib.metrics import weighted_auroc

    y = np.array([[0], [1], [0]])
    s = np.array([[0.2], [0.9], [0.5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = weighted_auroc(y, s, np.array([[1, 1, 0], [1, 0, 1], [2, 1, 1]]))
    assert out[0, 0] == 1.0 and math.isnan(out[1, 0]) and out[2, 0] == 1.0


def test_weighted_auroc_hand_values_with_ties_and_multiplicities():
    """Scores 0.5 (positive), 0.5 and 0.1 (negatives). Counts (2, 1, 1): the positive,
    twice, ties one negative (1/2 each) and beats the other (1 each): (2 * 1/2 + 2 * 1) /
    (2 * 2) = 0.75. Counts (1, 0, 3): beats all three copies of 0.1: 1. Counts (1, 2, 0):
    ties both copies: 0.5. A class with no negative at all reads NaN for every resample."""
    from pcrl_lib.metrics import weighted_auroc

    y = np.array([[1, 1], [0, 1], [0, 1]])
    s = np.array([[0.5, 0.3], [0.5, 0.2], [0.1, 0.1]])
    out = weighted_auroc(y, s, np.array([[2, 1, 1], [1, 0, 3], [1, 2, 0]]))
    assert out[:, 0].tolist() == [0.75, 1.0, 0.5]
    assert np.isnan(out[:, 1]).all()


def test_an_interval_needs_at_least_half_of_the_resamples_defined():
    from pcrl_lib.metrics import _percentile_interval

    half = np.r_[np.arange(5.0), np.full(5, np.nan)]
    assert _percentile_interval(half, 10, 0.5) == pytest.approx((1.0, 3.0))
    assert all(math.isnan(v) for v in _percentile_interval(half[1:], 10, 0.5))  # 4 of 10


def test_bootstrap_auroc_defaults_are_1000_resamples_and_seed_0():
    from pcrl_lib.metrics import bootstrap_auroc

    rng = np.random.default_rng(2)
    y = (rng.random((30, 1)) < 0.5).astype(int)
    s = rng.random((30, 1)) + 0.3 * y
    assert bootstrap_auroc(y, s) == bootstrap_auroc(y, s, n_boot=1000, alpha=0.05, seed=0)
    assert bootstrap_auroc(y, s) != bootstrap_auroc(y, s, n_boot=1001)
    assert bootstrap_auroc(y, s) != bootstrap_auroc(y, s, seed=1)


def test_score_ranks_are_dense_per_class_and_keep_every_resampled_auroc():
    from pcrl_lib.metrics import score_ranks, weighted_auroc

    s = np.array([[0.3, 5.0], [0.1, 5.0], [0.3, -1.0], [0.9, 2.5]])
    assert score_ranks(s).tolist() == [[1, 2], [0, 2], [1, 0], [2, 1]]  # ties share a rank
    assert score_ranks(np.array([0.5, 0.2, 0.5])).tolist() == [1, 0, 1]  # (N,) stays (N,)
    assert score_ranks(s).dtype == np.int64  # integers: a record stores 2, not 2.0
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=(300, 3))
    scores = np.round(rng.normal(size=(300, 3)) + y, 1)  # rounded: many ties
    counts = rng.multinomial(300, np.ones(300) / 300, size=50)  # 50 bootstrap resamples
    got = weighted_auroc(y, score_ranks(scores), counts)
    np.testing.assert_array_equal(got, weighted_auroc(y, scores, counts))
    with pytest.raises(ValueError, match=r"\(N,\) or \(N, C\)"):
        score_ranks(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError):  # scores are numbers: no ranking of text by its letters
        score_ranks(["low", "high"])
