"""Evaluation metrics of the paper's tables (Sec. 4.2): per-class and mean AUROC for the
classification tasks (scikit-learn; their bootstrap intervals vectorised), Dice per class on whole volumes for segmentation
(BraTS WT / TC / ET, LiTS liver), and bootstrap confidence intervals over test cases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.metrics import roc_auc_score

#: BraTS evaluation regions as sets of labels (1 necrosis/non-enhancing, 2 oedema, 4 enhancing).
BRATS_REGIONS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}


def auroc_per_class(
    y_true: np.ndarray, y_score: np.ndarray, class_names: Sequence[str] | None = None
) -> dict[str, float]:
    """AUROC of each class and their mean (Tables IV-VI).

    A class whose test labels are all equal has no AUROC: its value is NaN, it is left out
    of the mean, and it is listed under ``"undefined"`` - never dropped silently.

    Args:
        y_true: ``(N, C)`` binary labels (or ``(N,)`` for one class).
        y_score: ``(N, C)`` scores of the same shape.
        class_names: C names (default ``"0" .. "C-1"``).

    Returns:
        ``{name: auroc, ..., "mean": mean over defined classes, "undefined": [names]}``.
    """
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim == 1:
        y_true, y_score = y_true[:, None], y_score[:, None] if y_score.ndim == 1 else y_score
    if y_true.shape != y_score.shape:
        raise ValueError(
            f"auroc_per_class: labels {y_true.shape} and scores {y_score.shape} differ"
        )
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("auroc_per_class: labels must be 0 or 1")
    if not np.isfinite(y_score).all():
        raise ValueError("auroc_per_class: scores contain NaN or Inf")
    names = (
        list(class_names) if class_names is not None else [str(i) for i in range(y_true.shape[1])]
    )
    if len(names) != y_true.shape[1]:
        raise ValueError(f"auroc_per_class: {len(names)} names for {y_true.shape[1]} classes")
    out: dict = {}
    undefined = []
    for c, name in enumerate(names):
        if len(np.unique(y_true[:, c])) < 2:
            out[name] = float("nan")
            undefined.append(name)
        else:
            out[name] = float(roc_auc_score(y_true[:, c], y_score[:, c]))
    defined = [out[n] for n in names if n not in undefined]
    out["mean"] = float(np.mean(defined)) if defined else float("nan")
    out["undefined"] = undefined
    return out


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    """Hard Dice ``2|P & T| / (|P| + |T|)`` of two binary masks; 1.0 when both are empty."""
    pred, target = np.asarray(pred, bool), np.asarray(target, bool)
    if pred.shape != target.shape:
        raise ValueError(f"dice: prediction {pred.shape} and target {target.shape} differ")
    denom = pred.sum() + target.sum()
    return 1.0 if denom == 0 else float(2 * np.logical_and(pred, target).sum() / denom)


def dice_per_region(
    pred_labels: np.ndarray, target_labels: np.ndarray, regions: dict[str, tuple[int, ...]]
) -> dict[str, float]:
    """Dice of each region (a set of labels) on whole label volumes, and their mean.

    Example: ``dice_per_region(p, t, BRATS_REGIONS)`` gives WT, TC, ET and mean (Table VII);
    ``dice_per_region(p, t, {"liver": (1, 2)})`` the LiTS liver (Table VIII).
    """
    out = {
        name: dice(np.isin(pred_labels, labels), np.isin(target_labels, labels))
        for name, labels in regions.items()
    }
    out["mean"] = float(np.mean(list(out.values())))
    return out


def bootstrap_ci(
    metric: Callable[..., float],
    *arrays: np.ndarray,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap ``(1 - alpha)`` interval of ``metric(*arrays)``, resampling the
    cases (the first axis of every array) with replacement.

    Resamples on which the metric is undefined (NaN, e.g. a class without positives) are
    left out; if more than half are, the interval is ``(nan, nan)``.
    """
    if not arrays:
        raise ValueError("bootstrap_ci: give at least one array")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("bootstrap_ci: arrays need the same number of cases")
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        values.append(metric(*[np.asarray(a)[idx] for a in arrays]))
    return _percentile_interval(np.asarray(values, dtype=np.float64), n_boot, alpha)


def _percentile_interval(values: np.ndarray, n_boot: int, alpha: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) < n_boot / 2:
        return float("nan"), float("nan")
    lo, hi = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def weighted_auroc(y_true: np.ndarray, y_score: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AUROC of each class under each row of case multiplicities ``counts`` - the exact
    AUROC of a resample that holds case ``i`` ``counts[b, i]`` times.

    It is the weighted Mann-Whitney statistic (ties count half):
    ``sum_{i pos, j neg} w_i w_j ([s_i > s_j] + [s_i = s_j] / 2) / (W_pos W_neg)``. The
    negatives' weights are summed cumulatively in score order once per resample, and each
    positive reads the weight below its score and up to it (``searchsorted``): ``O(B N)``
    after one sort per class. Every sum is of integers (below ``2 N^3``), so the statistic
    is exact in float64 up to its one division for resamples of fewer than 10^5 cases.

    Args:
        y_true, y_score: ``(N, C)`` labels in {0, 1} and scores.
        counts: ``(B, N)`` non-negative multiplicities (a bootstrap resample each).

    Returns:
        ``(B, C)``; NaN where a resample holds no positive or no negative of a class.
    """
    y_true = np.asarray(y_true).astype(bool)
    y_score = np.asarray(y_score, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    n, n_classes = y_true.shape
    if y_score.shape != y_true.shape or counts.ndim != 2 or counts.shape[1] != n:
        raise ValueError(
            f"weighted_auroc: labels {y_true.shape}, scores {y_score.shape} and counts "
            f"{counts.shape} do not match ((N, C), (N, C), (B, N))"
        )
    by_case = np.ascontiguousarray(counts.T)  # (N, B): a case's weights are one row
    aucs = np.empty((len(counts), n_classes))
    for c in range(n_classes):
        pos = y_true[:, c]
        negatives = y_score[~pos, c]
        order = np.argsort(negatives)  # any order of ties: read at their edges below
        # below[k, b]: resample b's weight of the k lowest-scored negatives
        below = np.zeros((len(order) + 1, len(counts)))
        np.cumsum(by_case[np.flatnonzero(~pos)[order]], axis=0, out=below[1:])
        ranked = negatives[order]
        under = np.searchsorted(ranked, y_score[pos, c])  # negatives below (side left)
        up_to = np.searchsorted(ranked, y_score[pos, c], side="right")  # ... and tied
        w_pos = by_case[pos]
        num = 0.5 * (w_pos * (below[under] + below[up_to])).sum(axis=0)
        den = w_pos.sum(axis=0) * below[-1]
        with np.errstate(invalid="ignore"):  # den 0 -> num 0: NaN, quietly
            aucs[:, c] = num / den
    return aucs


def score_ranks(y_score: np.ndarray) -> np.ndarray:
    """Dense ranks of the scores within each class: ``(N,)`` or ``(N, C)`` scores -> integers
    of the same shape, 0 for a class's lowest score, equal scores sharing a rank.

    Every statistic of the scores' order is unchanged - AUROC, and :func:`weighted_auroc`
    under any resample, since both see only which score is above, below or tied with which -
    so a record of ranks (integers below N) replaces one of scores for them, at a fraction
    of the size. Not for calibration or thresholds."""
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_score.ndim not in (1, 2):
        raise ValueError(f"score_ranks: scores must be (N,) or (N, C), got {y_score.shape}")
    columns = y_score.reshape(len(y_score), -1)
    ranks = np.empty(columns.shape, dtype=np.int64)
    for c in range(columns.shape[1]):
        ranks[:, c] = np.unique(columns[:, c], return_inverse=True)[1].ravel()
    return ranks.reshape(y_score.shape)


def bootstrap_auroc(
    y_true: np.ndarray, y_score: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[list[tuple[float, float]], tuple[float, float]]:
    """Percentile bootstrap intervals of each class's AUROC and of their mean - the same
    resamples for all - computed at once.

    Each resample is a vector of case multiplicities; its AUROC is the exact AUROC of the
    resampled cases (:func:`weighted_auroc`). Resamples where a class is undefined (one label only)
    leave that class out (of the mean too); rules as :func:`bootstrap_ci`.

    Args:
        y_true, y_score: ``(N, C)`` labels in {0, 1} and scores.

    Returns:
        ``([(lo, hi) per class], (lo, hi) of the mean)``.
    """
    y_true = np.asarray(y_true).astype(bool)
    n, n_classes = y_true.shape
    counts = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=n_boot)
    aucs = weighted_auroc(y_true, y_score, counts)
    per_class = [_percentile_interval(aucs[:, c], n_boot, alpha) for c in range(n_classes)]
    with np.errstate(invalid="ignore"):
        defined = np.isfinite(aucs).any(axis=1)
        mean = np.full(n_boot, np.nan)
        mean[defined] = np.nanmean(aucs[defined], axis=1)
    return per_class, _percentile_interval(mean, n_boot, alpha)
