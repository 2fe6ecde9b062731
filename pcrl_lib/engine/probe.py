"""Linear probes: how much a frozen encoder's features tell about a classification task,
apart from any fine-tuning budget.

Fine-tuning (:mod:`pcrl_lib.engine.finetune`) answers the paper's question - what a
pre-trained initialisation gives after training the whole network - but at the small
profiles its few dozen SGD steps can hide what pre-training learnt. A linear probe holds
the encoder fixed: every level of its feature pyramid is average-pooled, the concatenation
is standardised on the training samples, and one L2-regularised logistic regression per
class is fitted (scikit-learn). Comparing a checkpoint with the same encoder at random
initialisation isolates the representation (the usual linear evaluation of
self-supervised learning, e.g. SimSiam Sec. 4, here with batch norms re-estimated on the
probe's training samples instead of kept from pre-training).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.utils.data import DataLoader, Dataset

from pcrl_lib.engine.finetune import FinetuneConfig, recalibrate_batch_norm
from pcrl_lib.metrics import auroc_per_class
from pcrl_lib.perf import autocast_context, mixed_input, mixed_model


@torch.no_grad()
def pooled_features(
    model: nn.Module, dataset: Dataset, batch_size: int = 32, dtype: str = "fp32"
) -> tuple[np.ndarray, np.ndarray]:
    """Average-pooled pyramid features of ``model.encoder`` over ``dataset``, in eval mode.

    Args:
        model: a downstream model with an ``encoder`` returning a feature list (levels
            that are ``None``, like the 2D ResNet's rate 1, are skipped).
        dataset: samples with ``image (C, *S)`` and ``label (K,)``.

    Returns:
        ``features (N, sum_k C_k)`` float64 and ``labels (N, K)``.
    """
    mixed_model(model.eval(), dtype)
    feats, labels = [], []
    for batch in DataLoader(dataset, batch_size=batch_size):
        with autocast_context(dtype, "cpu"):
            levels = model.encoder(mixed_input(batch["image"], dtype, "cpu"))
        pooled = [f.float().flatten(2).mean(2) for f in levels if f is not None]
        feats.append(torch.cat(pooled, 1).double().numpy())
        labels.append(batch["label"].reshape(len(batch["label"]), -1).numpy())
    return np.concatenate(feats), np.concatenate(labels)


def fit_linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    c: float = 0.1,
    class_names: list[str] | None = None,
    keep_scores: bool = False,
) -> dict:
    """Logistic regression per class on standardised features; AUROC on the test samples.

    Args:
        train_x, test_x: ``(N, D)`` features; standardised with the training mean and std.
        train_y, test_y: ``(N, K)`` binary labels.
        c: inverse L2 strength (scikit-learn's ``C``).

    Returns:
        :func:`pcrl_lib.metrics.auroc_per_class`'s dict; a class with a single label value
        among the training samples cannot be fitted: its AUROC is NaN and it is listed
        under ``"unfitted"``. ``keep_scores``: the ``(N, K)`` decision values are returned
        under ``"scores"`` (for intervals over the test samples).
    """
    train_x, test_x = np.asarray(train_x, float), np.asarray(test_x, float)
    train_y, test_y = np.asarray(train_y).reshape(len(train_x), -1), np.asarray(test_y)
    test_y = test_y.reshape(len(test_x), -1)
    if train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"fit_linear_probe: features must be (N, D) with one D, got {train_x.shape} "
            f"and {test_x.shape}"
        )
    if train_y.shape[1] != test_y.shape[1]:
        raise ValueError(f"fit_linear_probe: {train_y.shape[1]} vs {test_y.shape[1]} classes")
    mean, std = train_x.mean(0), train_x.std(0) + 1e-8
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    scores = np.zeros(test_y.shape)
    unfitted = []
    for k in range(train_y.shape[1]):
        if len(np.unique(train_y[:, k])) < 2:
            unfitted.append(k)
            continue
        clf = LogisticRegression(C=c, max_iter=5000).fit(train_x, train_y[:, k])
        scores[:, k] = clf.decision_function(test_x)
    out = auroc_per_class(test_y, scores, class_names)
    names = list(out)[: test_y.shape[1]]
    for k in unfitted:
        out[names[k]] = float("nan")
    defined = [out[n] for n in names if np.isfinite(out[n])]
    out["mean"] = float(np.mean(defined)) if defined else float("nan")
    out["unfitted"] = [names[k] for k in unfitted]
    if keep_scores:
        out["scores"] = scores
    return out


def linear_probe(
    model: nn.Module,
    train: Dataset,
    test: Dataset,
    c: float = 0.1,
    batch_size: int = 32,
    dtype: str = "fp32",
    class_names: list[str] | None = None,
) -> dict:
    """Probe ``model.encoder`` frozen: batch norms re-estimated on ``train`` (precise BN;
    a random encoder's running statistics are the identity), pooled pyramid features of
    both sets, :func:`fit_linear_probe`. The weights are not changed; the running
    statistics are."""
    cfg = FinetuneConfig(task="classification", epochs=1, batch_size=batch_size, dtype=dtype)
    recalibrate_batch_norm(model, train, cfg)
    train_x, train_y = pooled_features(model, train, batch_size, dtype)
    test_x, test_y = pooled_features(model, test, batch_size, dtype)
    return fit_linear_probe(train_x, train_y, test_x, test_y, c, class_names)
