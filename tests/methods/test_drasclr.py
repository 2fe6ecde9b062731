"""DrasCLR: the location-conditioned convolution by hand, the anatomical regions, the
InfoNCE logits, the per-region queues, gradients reaching the conditioning, a falling loss,
the transfer of the shared kernels, and its inputs located in a frame."""

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pcrl_lib.data.location import box_location, synthetic_ct_frame
from pcrl_lib.methods.drasclr import (
    DrasCLR,
    LocationConv3d,
    condition_on_location,
    drasclr_logits,
    region_index,
    set_location,
)
from pcrl_lib.methods.inputs import DrasCLRInputs
from pcrl_lib.models.downstream import Classifier, load_pretrained_encoder
from pcrl_lib.pipeline import paper_view_generator
from tests.methods.helpers import train


def test_each_sample_is_convolved_with_its_locations_kernel():
    torch.manual_seed(0)
    conv = condition_on_location(nn.Sequential(nn.Conv3d(2, 3, 3, padding=1)), n_experts=4)[0]
    assert isinstance(conv, LocationConv3d)
    x, loc = torch.randn(2, 2, 5, 5, 5), torch.tensor([[-1.0, 0.0, 0.5], [0.3, 0.3, -0.9]])
    plain = F.conv3d(x, conv.weight, conv.bias, padding=1)
    assert torch.allclose(conv(x), plain, atol=1e-6)  # no location: the shared kernel
    set_location(conv, loc)
    out = conv(x)
    for b in range(2):  # by hand: W + sum_e sigmoid(r(l))_e dW_e
        gate = torch.sigmoid(loc[b] @ conv.routing.weight.T + conv.routing.bias)
        kernel = conv.weight + (gate[:, None, None, None, None, None] * conv.experts).sum(0)
        expected = F.conv3d(x[b : b + 1], kernel, conv.bias, padding=1)
        assert torch.allclose(out[b : b + 1], expected, atol=1e-5)
    assert not torch.allclose(out[0], plain[0], atol=1e-3)
    set_location(conv, loc[:1])
    with pytest.raises(ValueError, match="1 rows for a batch of 2"):
        conv(x)
    with pytest.raises(ValueError, match="no Conv3d"):
        condition_on_location(nn.Linear(2, 2))


def test_regions_are_cells_of_a_grid_over_the_frame():
    loc = torch.tensor([[-1.0, -1, -1], [1, 1, 1], [0, 0, 0], [-0.5, 0.9, 0.1], [-3, 5, 0]])
    # (-0.5, 0.9, 0.1): cells (0, 2, 1) -> 0 * 9 + 2 * 3 + 1 = 7; outside: clamped
    assert region_index(loc, (3, 3, 3)).tolist() == [0, 26, 13, 7, 0 * 9 + 2 * 3 + 1]
    assert region_index(loc[:, :2], (2, 4)).tolist() == [0, 7, 6, 3, 3]
    with pytest.raises(ValueError, match="3 coordinates"):
        region_index(loc, (3, 3))


def test_logits_by_hand():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    q, k = e1[None], e1[None]
    r = torch.stack([e1, e2])[None]  # two neighbours
    negatives = torch.stack([e2, -e1])[None]
    patch, neighbour = drasclr_logits(q, k, r, negatives, 0.5)
    assert patch.tolist() == [[2.0, 0.0, -2.0]]  # q.k, q.e2, q.(-e1) over 0.5
    assert neighbour.tolist() == [[2.0, 2.0, -2.0]]  # (1 + 0), (0 + 1), (-1 + 0) over 0.5


def tiny(**kw):
    torch.manual_seed(0)
    return DrasCLR(3, 1, depth=3, width=0.0625, dim=8, hidden=16, n_experts=2, **kw)


def tiny_batch(n=4, k=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "patch1": torch.rand(n, 1, 16, 16, 16, generator=g),
        "patch2": torch.rand(n, 1, 16, 16, 16, generator=g),
        "loc": torch.rand(n, 3, generator=g) * 2 - 1,
        "neighbours": torch.rand(n, k, 1, 16, 16, 16, generator=g),
        "neighbour_locs": torch.rand(n, k, 3, generator=g) * 2 - 1,
    }


def test_keys_go_into_their_regions_queue_in_training_only():
    model = tiny(queue_size=3, regions=(1, 1, 2))
    batch = tiny_batch()
    batch["loc"] = torch.tensor([[0.0, 0, -0.5], [0, 0, -0.5], [0, 0, 0.5], [0, 0, -0.5]])
    before = model.queue.clone()
    model.eval()
    model(batch)
    assert torch.equal(model.queue, before)
    model.train()
    model(batch)
    assert model.queue_ptr.tolist() == [0, 1]  # 3 keys in region 0 (a full turn), 1 in 1
    assert not torch.equal(model.queue[1, 0], before[1, 0])
    assert torch.equal(model.queue[1, 1:], before[1, 1:])
    assert torch.allclose(model.queue.norm(dim=-1), torch.ones(2, 3), atol=1e-5)


def test_the_location_conditioning_receives_gradients_and_changes_the_features():
    model = tiny()
    batch = tiny_batch()
    out = model(batch)
    out["loss"].backward()
    convs = [m for m in model.encoder.modules() if isinstance(m, LocationConv3d)]
    assert convs and all(m.routing.weight.grad.abs().sum() > 0 for m in convs)
    assert all(m.experts.grad.abs().sum() > 0 for m in convs)
    assert all(p.grad is None for p in model.key_encoder.parameters())
    model.eval()
    x = batch["patch1"][:1].repeat(2, 1, 1, 1, 1)
    z = model.embed(x, torch.tensor([[-0.9, -0.9, -0.9], [0.9, 0.9, 0.9]]))
    assert (
        float((z[0] - z[1]).detach().abs().max()) > 1e-5
    )  # same patch, two places (small at start)


def test_loss_falls_on_a_tiny_batch_and_the_shared_kernels_load_downstream():
    # one queue of one batch: from the second step on the negatives are real keys
    model = tiny(queue_size=4, regions=(1, 1, 1))
    losses = train(model, tiny_batch(), 25)
    assert losses[-1] < losses[1] - 0.5
    assert set(model(tiny_batch())) == {"loss", "loss_patch", "loss_neighbour", "accuracy"}
    downstream = Classifier(3, 1, 2, depth=3, width=0.0625)
    report = load_pretrained_encoder(downstream, {"model": model.state_dict()})
    conv = next(k for k in report.loaded if k.endswith("conv.weight"))
    assert torch.equal(downstream.encoder.state_dict()[conv], model.encoder.state_dict()[conv])


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="spatial_dims 3"):
        DrasCLR(2, 3)
    with pytest.raises(ValueError, match="queue_size"):
        tiny(queue_size=0)
    with pytest.raises(KeyError, match="DrasCLR: batch lacks"):
        tiny()({"patch1": torch.zeros(2, 1, 16, 16, 16)})


def ramp(shape):
    axes = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    return (10_000 * axes[0] + 100 * axes[1] + axes[2])[None]


def test_inputs_cut_located_patches_and_their_neighbours():
    base = paper_view_generator(3, "none", window=None, background_value=None)
    base = replace(base, augment=replace(base.augment, local_view_ops=()))
    make = DrasCLRInputs(base, patch=(8, 8, 8), n_neighbours=3, shift=0.5)
    image = ramp((24, 24, 24))
    frame = synthetic_ct_frame((24, 24, 24), (1.0, 1.0, 1.0), (24, 24, 24), (0, 0, 0), (12, 12, 12))
    s = make({"image": image, "frame": frame}, seed=3)
    assert s["patch1"].shape == s["patch2"].shape == (1, 8, 8, 8)
    assert s["neighbours"].shape == (3, 1, 8, 8, 8) and s["neighbour_locs"].shape == (3, 3)
    # the anchor: its first voxel's ramp value gives its start; its location is the frame's
    first = float(s["patch1"][0, 0, 0, 0])
    start = (int(first // 10_000), int(first % 10_000 // 100), int(first % 100))
    assert torch.equal(
        s["patch1"][0],
        torch.tensor(
            image[0, start[0] : start[0] + 8, start[1] : start[1] + 8, start[2] : start[2] + 8]
        ),
    )
    assert s["loc"].tolist() == pytest.approx(box_location(frame, start, (8, 8, 8)).tolist())
    # (start + 3.5 + 0.5 - 12) / 12 per axis by hand
    assert s["loc"].tolist() == pytest.approx([(a + 4 - 12) / 12 for a in start])
    for j in range(3):  # each neighbour: moved by 4 voxels (or to the border) along one axis
        moved = (s["neighbour_locs"][j] - s["loc"]) * 12
        assert int((moved.abs() > 1e-4).sum()) <= 1 and float(moved.abs().max()) <= 4 + 1e-4
    # no frame: the image's own extent
    plain = make(image, seed=3)
    assert plain["loc"].tolist() == pytest.approx([2 * (a + 4) / 24 - 1 for a in start])
