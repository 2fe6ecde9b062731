import math

import pytest
import torch

from pcrl_lib.methods.byol import BYOL, byol_loss, target_momentum
from pcrl_lib.models.downstream import Classifier, load_pretrained_encoder
from tests.methods.helpers import check_ema_target, train


def tiny(**kw):
    torch.manual_seed(0)
    return BYOL(3, 1, depth=3, width=0.0625, hidden=32, dim=16, **kw)


def views(seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    return {f"global{i}": torch.rand(n, 1, 16, 16, 16, generator=g) for i in (1, 2)}


def test_loss_is_two_minus_twice_the_cosine():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    assert float(byol_loss(p, z)) == pytest.approx((0.0 + 4.0) / 2)  # aligned, opposite
    z = z.requires_grad_(True)
    byol_loss(p.requires_grad_(True), z).backward()
    assert z.grad is None  # the target gets no gradient


def test_target_momentum_follows_byols_cosine_schedule():
    assert target_momentum(0.996, 0.0) == pytest.approx(0.996)
    assert target_momentum(0.996, 0.5) == pytest.approx(0.998)
    assert target_momentum(0.996, 1.0) == pytest.approx(1.0)
    assert target_momentum(0.99, 0.25) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)
    assert target_momentum(0.99, 0.7, "constant") == 0.99
    with pytest.raises(ValueError, match="schedule"):
        BYOL(3, 1, depth=3, width=0.0625, momentum_schedule="linear")


def test_target_is_the_ema_of_the_online_network_and_gets_no_gradient():
    model = tiny(momentum=0.9, momentum_schedule="constant")
    out = check_ema_target(model, views(), model.encoder, model.target_encoder, 0.9)
    assert all(p.grad is None for p in model.target_projector.parameters())
    assert any(p.grad is not None for p in model.encoder.parameters())
    assert float(out["momentum"]) == pytest.approx(0.9)


def test_loss_falls_on_a_tiny_batch_and_the_encoder_loads_downstream():
    model = tiny(momentum=0.99)
    losses = train(model, views(), 30)
    assert losses[-1] < losses[0] and 0 <= min(losses) <= 4
    downstream = Classifier(3, 1, 2, depth=3, width=0.0625)
    report = load_pretrained_encoder(downstream, {"model": model.state_dict()})
    assert report.loaded and not any(k.startswith("target") for k in report.loaded)
