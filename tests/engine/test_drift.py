import math

import pytest
import torch
from torch import nn

from pcrl_lib.engine.drift import kernel_weights, summarize_drift, weight_drift


def test_kernel_weights_keeps_kernels_in_order_and_copies_them():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 1))
    kernels = kernel_weights(net)
    assert list(kernels) == ["0.weight", "3.weight"]  # no biases, no batch-norm parameters
    with torch.no_grad():
        net[0].weight.add_(1.0)
    assert not torch.equal(kernels["0.weight"], net[0].weight)  # a copy, not a view


def test_weight_drift_is_the_relative_frobenius_change():
    before = {"a": torch.ones(2, 2), "b": torch.tensor([[3.0, 4.0]])}
    after = {"a": 3 * torch.ones(2, 2), "b": torch.tensor([[3.0, 4.0]]), "extra": torch.ones(1, 1)}
    # a: ||2 * ones(2, 2)|| / ||ones(2, 2)|| = 4 / 2; b unchanged; keys outside `before` ignored
    assert weight_drift(before, after) == {"a": 2.0, "b": 0.0}
    flipped = {"a": -torch.ones(2, 2), "b": torch.tensor([[0.0, 4.0]])}
    drift = weight_drift(before, flipped)
    assert drift["a"] == pytest.approx(2.0) and drift["b"] == pytest.approx(3 / 5)


def test_weight_drift_names_the_bad_kernel():
    before = {"conv.weight": torch.ones(2, 2)}
    with pytest.raises(ValueError, match="conv.weight.*missing"):
        weight_drift(before, {})
    with pytest.raises(ValueError, match=r"conv.weight.*\(2, 2\) -> \(4,\)"):
        weight_drift(before, {"conv.weight": torch.ones(4)})
    with pytest.raises(ValueError, match="starts at zero"):
        weight_drift({"conv.weight": torch.zeros(2, 2)}, {"conv.weight": torch.ones(2, 2)})


def test_summarize_drift_reads_first_median_mean_last_in_order():
    summary = summarize_drift({"stem": 0.9, "mid": 0.1, "deep": 0.2})
    assert summary == {"first": 0.9, "median": 0.2, "mean": pytest.approx(0.4), "last": 0.2}
    with pytest.raises(ValueError, match="no kernels"):
        summarize_drift({})


def test_a_trained_layer_drifts_and_an_untouched_one_does_not():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    net[1].weight.requires_grad_(False)
    before = kernel_weights(net)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.5)
    for _ in range(5):
        opt.zero_grad()
        net(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
    drift = weight_drift(before, kernel_weights(net))
    assert drift["0.weight"] > 0.01 and drift["1.weight"] == 0.0
    assert math.isfinite(summarize_drift(drift)["mean"])
