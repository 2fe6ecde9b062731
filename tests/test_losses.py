import math

import pytest
import torch

from pcrl_lib.losses import (
    dice_loss,
    negative_cosine,
    pcrlv2_objective,
    restoration_loss,
    symmetric_negative_cosine,
)


def test_restoration_loss_hand_value():
    restored = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    target = torch.tensor([[[1.0, 0.0], [3.0, 1.0]]])
    assert restoration_loss(restored, target).item() == pytest.approx((0 + 4 + 0 + 9) / 4)


def test_restoration_loss_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(1, 2\) and \(1, 3\)"):
        restoration_loss(torch.zeros(1, 2), torch.zeros(1, 3))


def test_negative_cosine_hand_value():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[1.0, 1.0], [0.0, -3.0]])
    # cos = 1/sqrt(2) and -1 -> loss = -(1/sqrt(2) - 1) / 2
    assert negative_cosine(p, z).item() == pytest.approx(-(1 / math.sqrt(2) - 1) / 2)


def test_stop_gradient_blocks_the_target_branch():
    p = torch.randn(4, 8, requires_grad=True)
    z = torch.randn(4, 8, requires_grad=True)
    negative_cosine(p, z).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None


def test_symmetric_loss_is_symmetric_and_each_prediction_gets_gradient():
    torch.manual_seed(0)
    p1, z1, p2, z2 = (torch.randn(3, 5, requires_grad=True) for _ in range(4))
    a = symmetric_negative_cosine(p1, z1, p2, z2)
    b = symmetric_negative_cosine(p2, z2, p1, z1)
    assert a.item() == pytest.approx(b.item())
    a.backward()
    assert p1.grad.abs().sum() > 0 and p2.grad.abs().sum() > 0
    assert z1.grad is None and z2.grad is None


def test_symmetric_loss_allows_crossed_dimensions():
    p1, z2 = torch.randn(2, 6), torch.randn(2, 6)
    p2, z1 = torch.randn(2, 4), torch.randn(2, 4)
    assert symmetric_negative_cosine(p1, z1, p2, z2).shape == ()
    assert symmetric_negative_cosine(z2, z1, z1, z2).item() == pytest.approx(-1.0)


def test_objective_sums_present_terms():
    t = torch.tensor
    assert pcrlv2_objective(t(1.0), t(-0.5), t(-0.25)).item() == pytest.approx(0.25)
    assert pcrlv2_objective(t(1.0), None, None).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="switched off"):
        pcrlv2_objective(None, None, None)


def test_dice_loss_extremes():
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :] = 1
    assert dice_loss(mask, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert dice_loss(1 - mask, mask).item() == pytest.approx(1.0, abs=1e-4)
    half = torch.full_like(mask, 0.5)  # 2*4 / (8 + 8) = 0.5
    assert dice_loss(half, mask).item() == pytest.approx(0.5, abs=1e-4)


@pytest.mark.parametrize(
    ("name", "loss"),
    [
        ("restoration_loss", restoration_loss),
        ("negative_cosine", negative_cosine),
        ("dice_loss", dice_loss),
    ],
)
def test_shape_errors_name_the_loss(name, loss):
    with pytest.raises(ValueError, match=rf"^{name}: shapes differ, got \(2, 3\) and \(2, 4\)$"):
        loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_negative_cosine_refuses_feature_maps_by_name():
    with pytest.raises(
        ValueError, match=r"^negative_cosine expects \(B, D\) tensors, got \(1, 2, 3\)$"
    ):
        negative_cosine(torch.ones(1, 2, 3), torch.ones(1, 2, 3))


def test_negative_cosine_compares_along_features_not_batch():
    # along dim 1: rows are parallel (cos 1); along dim 0 the columns would give cos 0.6
    p = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    z = torch.tensor([[3.0, 0.0], [4.0, 0.0]])
    assert negative_cosine(p, z).item() == pytest.approx(-1.0)


def test_objective_message_is_exact():
    with pytest.raises(ValueError, match=r"^pcrlv2_objective: every term is switched off$"):
        pcrlv2_objective(None, None, None)


def test_dice_loss_pools_batch_and_space_per_channel():
    """Per channel over batch and space, then the mean over channels (hand-computed)."""
    probs = torch.zeros(2, 2, 2)  # (B, C, S)
    target = torch.zeros(2, 2, 2)
    probs[:, 0], target[:, 0] = 1, 1  # channel 0: perfect -> dice 1
    probs[0, 1] = 1  # channel 1: P = 2 voxels, T = 1 voxel, overlap 1 -> dice 2/3
    target[0, 1, 0] = 1
    assert dice_loss(probs, target, eps=0).item() == pytest.approx(1 - (1 + 2 / 3) / 2)
    # eps = 1 in numerator and denominator: (2*1 + 1) / (3 + 1) and (8 + 1) / (8 + 1)
    assert dice_loss(probs, target, eps=1).item() == pytest.approx(1 - (1 + 0.75) / 2)
    # an empty channel predicted empty is perfect thanks to eps, not 0/0
    empty = torch.zeros(1, 1, 3)
    assert dice_loss(empty, empty).item() == pytest.approx(0.0)
