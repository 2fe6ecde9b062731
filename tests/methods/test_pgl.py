"""PGL: the common region located from the crop boxes and flips (hand-computed), its
alignment on ramp images, the priors' switches, the EMA target, a falling loss and the
encoder's transfer."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pcrl_lib.methods.inputs import PGLInputs
from pcrl_lib.methods.pgl import PGL, common_region_grid, local_consistency, roi_align
from pcrl_lib.models.downstream import Classifier, load_pretrained_encoder
from pcrl_lib.pipeline import Intensity, paper_view_generator
from pcrl_lib.views import Box, CropSizes, crop_resize
from tests.methods.helpers import check_ema_target, train


def boxes(*rows):
    return torch.tensor([rows], dtype=torch.float32)  # (1, 2, d)


def test_grid_of_the_common_region_by_hand():
    # view 1: start 2, size 8 on every axis; view 2: start (6, 4, 2), size (4, 4, 8)
    # intersection: [6, 10] x [4, 8] x [2, 10]; two bins per axis at x = lo + (k + 1/2) w / 2
    b1, b2 = boxes((2, 2, 2), (8, 8, 8)), boxes((6, 4, 2), (4, 4, 8))
    no_flip, flip0 = torch.zeros(1, 3), torch.tensor([[1.0, 0, 0]])
    g1, g2 = common_region_grid(b1, b2, no_flip, flip0, (2, 2, 2))
    assert g1.shape == g2.shape == (1, 2, 2, 2, 3)
    # axis 0 (grid's last component): x = 7, 9 -> view 1: 2 (x - 2) / 8 - 1 = 0.25, 0.75
    assert g1[0, :, 0, 0, 2].tolist() == pytest.approx([0.25, 0.75])
    # view 2: 2 (x - 6) / 4 - 1 = -0.5, 0.5, flipped along axis 0: 0.5, -0.5
    assert g2[0, :, 0, 0, 2].tolist() == pytest.approx([0.5, -0.5])
    # axis 1: x = 5, 7 -> view 1: -0.25, 0.25; view 2: 2 (x - 4) / 4 - 1 = -0.5, 0.5
    assert g1[0, 0, :, 0, 1].tolist() == pytest.approx([-0.25, 0.25])
    assert g2[0, 0, :, 0, 1].tolist() == pytest.approx([-0.5, 0.5])
    # axis 2: x = 4, 8 -> -0.5, 0.5 in both (same extent on that axis)
    assert g1[0, 0, 0, :, 0].tolist() == pytest.approx([-0.5, 0.5])
    assert g2[0, 0, 0, :, 0].tolist() == pytest.approx([-0.5, 0.5])


def test_crops_without_overlap_and_bad_shapes_are_refused():
    b1, b2 = boxes((0, 0), (4, 4)), boxes((4, 0), (4, 4))  # touching, not overlapping
    with pytest.raises(ValueError, match="do not overlap"):
        common_region_grid(b1, b2, torch.zeros(1, 2), torch.zeros(1, 2), (2, 2))
    with pytest.raises(ValueError, match=r"\(B, 2, d\)"):
        common_region_grid(b1, b2, torch.zeros(1, 2), torch.zeros(1, 2), (2, 2, 2))


def ramp(shape):
    """A linear image: trilinear resampling and average pooling reproduce it exactly."""
    axes = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    return (100 * axes[0] + 10 * axes[1] + axes[2])[None]


def view(image, box, out, flip):
    x = crop_resize(image, box, out)
    axes = [a + 1 for a in range(len(out)) if flip[a]]
    return torch.flip(x, axes) if axes else x


@pytest.mark.parametrize("stride", [1, 2])
def test_both_views_read_the_same_image_points_flips_included(stride):
    image = ramp((40, 40, 40))
    b1, b2 = Box((6, 8, 5), (24, 16, 20)), Box((14, 10, 9), (16, 24, 24))
    f1, f2 = (0, 1, 0), (1, 0, 1)
    out = (16, 16, 16)
    v1 = view(image, b1, out, f1)[None]
    v2 = view(image, b2, out, f2)[None]
    if stride > 1:  # a feature map at stride 2 covers the same field of view
        v1, v2 = F.avg_pool3d(v1, stride), F.avg_pool3d(v2, stride)
    t = lambda b: torch.tensor([[b.start, b.size]], dtype=torch.float32)  # noqa: E731
    g1, g2 = common_region_grid(
        t(b1), t(b2), torch.tensor([f1], dtype=torch.float32),
        torch.tensor([f2], dtype=torch.float32), (3, 3, 3),
    )  # fmt: skip
    r1, r2 = roi_align(v1, g1), roi_align(v2, g2)
    # by hand: intersection [14, 30] x [10, 24] x [9, 25]; bin centres lo + (k + 1/2) w / 3;
    # the image's voxel i is centred at i + 1/2, so the ramp reads f(x - 1/2)
    lo, hi = np.array([14, 10, 9]), np.array([30, 24, 25])
    k = (np.arange(3) + 0.5) / 3
    x, y, z = (lo[a] + k * (hi[a] - lo[a]) - 0.5 for a in range(3))
    expected = 100 * x[:, None, None] + 10 * y[None, :, None] + z[None, None, :]
    assert torch.allclose(r1[0, 0], torch.tensor(expected, dtype=torch.float32), atol=1e-3)
    assert torch.allclose(r2[0, 0], r1[0, 0], atol=1e-3)


def no_appearance(dims=3, **views):
    base = paper_view_generator(dims, "none", window=None, **views)
    return replace(base, augment=replace(base.augment, local_view_ops=()))


def test_pgl_inputs_record_where_every_voxel_came_from():
    base = no_appearance(
        global_sizes=CropSizes(sizes=((16, 16, 16), (24, 24, 24))),
        global_out=(8, 8, 8),
        background_value=None,
    )
    make = PGLInputs(base, flip_p=0.5)
    image = ramp((40, 40, 40))
    flipped = 0
    for seed in range(6):
        s = make(image, seed)
        assert s["global1"].shape == s["global2"].shape == (1, 8, 8, 8)
        assert s["box1"].shape == (2, 3) and s["flip1"].shape == (3,)
        flipped += int(s["flip1"].sum() + s["flip2"].sum())
        for i in (1, 2):  # each view is its recorded crop, resized and flipped
            b = s[f"box{i}"].int().tolist()
            expected = view(image, Box(tuple(b[0]), tuple(b[1])), (8, 8, 8), s[f"flip{i}"].tolist())
            assert torch.allclose(s[f"global{i}"], expected)
        batch = {k: v[None] for k, v in s.items()}
        g1, g2 = PGL(3, 1, depth=3, width=0.0625, hidden=8, dim=4, roi_size=2).grids(batch)
        a, b = roi_align(batch["global1"], g1), roi_align(batch["global2"], g2)
        assert torch.allclose(a, b, atol=1e-2)  # the common region, aligned
    assert 0 < flipped < 36  # flips happen, not always


def test_priors_off_treat_the_whole_views_as_aligned():
    batch = {
        "box1": boxes((2, 2), (8, 8)),
        "box2": boxes((6, 4), (4, 4)),
        "flip1": torch.tensor([[1.0, 0.0]]),
        "flip2": torch.tensor([[0.0, 1.0]]),
    }
    model = PGL(2, 3, hidden=8, dim=4, roi_size=2, crop_prior=False, flip_prior=True)
    g1, g2 = model.grids(batch)
    # whole views, two bins: +-0.5 per axis; view 1 flipped along axis 0 (component 1)
    assert g1[0, :, 0, 1].tolist() == pytest.approx([0.5, -0.5])
    assert g2[0, :, 0, 1].tolist() == pytest.approx([-0.5, 0.5])
    assert g2[0, 0, :, 0].tolist() == pytest.approx([0.5, -0.5])
    model.flip_prior = False
    g1, g2 = model.grids(batch)
    assert torch.equal(g1, g2)
    model.crop_prior = True
    g1, _ = model.grids(batch)
    assert g1[0, :, 0, 1].tolist() == pytest.approx([0.25, 0.75])  # [6, 10] in view 1


def test_local_consistency_is_two_minus_twice_the_voxelwise_cosine():
    p = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]).permute(1, 2, 0)[None]  # (1, 2, 1, 2)
    z = torch.tensor([[[1.0, 0.0]], [[0.0, -3.0]]]).permute(1, 2, 0)[None]
    # voxel 0: aligned (0), voxel 1: opposite (4)
    assert float(local_consistency(p.reshape(1, 2, 2), z.reshape(1, 2, 2))) == pytest.approx(2.0)


def tiny(**kw):
    torch.manual_seed(0)
    return PGL(3, 1, depth=3, width=0.0625, hidden=16, dim=8, **{"roi_size": 2, **kw})


def tiny_batch(n=4):
    base = no_appearance(
        global_sizes=CropSizes(sizes=((16, 16, 16), (24, 24, 24))),
        global_out=(16, 16, 16),
        background_value=None,
    )
    base = replace(base, intensity=Intensity((-1000.0, 1000.0)))
    rng = np.random.default_rng(0)
    samples = [
        PGLInputs(base)(rng.normal(0, 400, (1, 32, 32, 32)).astype(np.float32), i) for i in range(n)
    ]
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def test_target_is_the_ema_of_the_online_network_and_gets_no_gradient():
    model = tiny(momentum=0.9, momentum_schedule="constant")
    out = check_ema_target(model, tiny_batch(), model.encoder, model.target_encoder, 0.9)
    assert all(p.grad is None for p in model.target_projector.parameters())
    assert all(p.grad is not None for p in model.predictor.parameters())
    assert float(out["momentum"]) == pytest.approx(0.9)


def test_loss_falls_on_a_tiny_batch_and_the_encoder_loads_downstream():
    model = tiny(momentum=0.99)
    losses = train(model, tiny_batch(), 25)
    assert losses[-1] < losses[0] and 0 <= min(losses) <= 4
    downstream = Classifier(3, 1, 2, depth=3, width=0.0625)
    report = load_pretrained_encoder(downstream, {"model": model.state_dict()})
    assert report.loaded and not any(k.startswith("target") for k in report.loaded)


def test_bad_settings_and_batches_are_refused():
    with pytest.raises(ValueError, match="level 0 has no feature map"):
        PGL(2, 3, level=0)
    with pytest.raises(ValueError, match="roi_size"):
        tiny(roi_size=0)
    with pytest.raises(KeyError, match="PGL: batch lacks"):
        tiny()({"global1": torch.zeros(2, 1, 16, 16, 16)})
