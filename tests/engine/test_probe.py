import numpy as np
import pytest
import torch

from pcrl_lib.engine.probe import fit_linear_probe, linear_probe, pooled_features
from pcrl_lib.models.downstream import Classifier
from tests.engine.test_finetune import Blobs


def test_fit_linear_probe_separates_a_linear_signal_and_standardises():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 5))
    y = np.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0], 1).astype(int)
    x[:, 3] *= 1e4  # a feature on another scale: standardisation keeps it from dominating
    out = fit_linear_probe(x[:150], y[:150], x[150:], y[150:], c=1.0, class_names=["a", "b"])
    assert out["a"] > 0.97 and out["b"] > 0.97
    assert out["mean"] == pytest.approx((out["a"] + out["b"]) / 2)
    assert out["unfitted"] == []


def test_fit_linear_probe_names_a_class_without_positives_and_leaves_it_out():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 3))
    y = np.stack([x[:, 0] > 0, np.zeros(60)], 1).astype(int)
    y[-5:, 1] = 1  # positives of class b only among the test samples
    out = fit_linear_probe(x[:40], y[:40], x[40:], y[40:], class_names=["a", "b"])
    assert out["unfitted"] == ["b"] and np.isnan(out["b"])
    assert out["mean"] == pytest.approx(out["a"])


def test_fit_linear_probe_rejects_mismatched_features():
    with pytest.raises(ValueError, match="features must be"):
        fit_linear_probe(np.zeros((4, 3)), np.zeros(4), np.zeros((4, 2)), np.zeros(4))


def test_pooled_features_concatenate_every_level():
    torch.manual_seed(0)
    model = Classifier(3, 1, 1, depth=2, width=0.125)
    x, y = pooled_features(model, Blobs(6, 0), batch_size=4)
    assert x.shape == (6, sum(model.encoder.out_channels)) and y.shape == (6, 1)
    # level 0 is the pooled first-stage output: checked against a direct computation
    model.eval()
    with torch.no_grad():
        first = model.encoder(torch.stack([Blobs(6, 0)[i]["image"] for i in range(6)]))[0]
    c0 = model.encoder.out_channels[0]
    np.testing.assert_allclose(x[:, :c0], first.mean((2, 3, 4)).double().numpy(), rtol=1e-5)


def test_linear_probe_keeps_weights_and_finds_the_blobs():
    torch.manual_seed(0)
    model = Classifier(3, 1, 1, depth=2, width=0.125)
    before = {k: v.clone() for k, v in model.named_parameters()}
    out = linear_probe(model, Blobs(40, 0), Blobs(20, 1), c=1.0, batch_size=8)
    assert out["mean"] > 0.9  # a bright cube changes the pooled features of a random encoder
    for k, v in model.named_parameters():
        assert torch.equal(v, before[k]), k
