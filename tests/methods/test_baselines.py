"""The paper's baselines: shapes, the property that defines each, and the loss falling over
a few steps on a tiny batch."""

import copy

import numpy as np
import pytest
import torch

from pcrl_lib.methods.contrastive import C2L, FeatureQueue, PCRLv1, ema_update, info_nce
from pcrl_lib.methods.cpc import CPC3D, grid_patches
from pcrl_lib.methods.imagenet import imagenet_resnet18
from pcrl_lib.methods.inputs import (
    GenesisInputs,
    PCRLv1Inputs,
    RubikInputs,
    VisualWordInputs,
    discover_visual_words,
    rubik_rotate,
)
from pcrl_lib.methods.registry import METHODS, get_method
from pcrl_lib.methods.restorers import ModelsGenesis, RubikCubePP, TransVW
from pcrl_lib.methods.simsiam import SimSiam
from pcrl_lib.pipeline import paper_view_generator
from pcrl_lib.views import CropSizes

TINY = dict(depth=3, width=0.125)
VIEWS = dict(
    global_sizes=CropSizes(sizes=((24, 24, 16),)),
    global_out=(16, 16, 8),
    local_sizes=CropSizes(sizes=((8, 8, 8),)),
    local_out=(8, 8, 8),
)


def _volume(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((1, 32, 32, 24)) * 1200 - 700).astype(np.float32)


def _steps(method, batch, n=8, lr=0.05):
    """SGD steps on one batch; a method's queue is restored after each step so that the
    negatives stay fixed and the losses are comparable."""
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=lr, momentum=0.9)
    queue = copy.deepcopy(method.queue.state_dict()) if hasattr(method, "queue") else None
    losses = []
    for _ in range(n):
        out = method(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        if queue is not None:
            method.queue.load_state_dict(queue)
        losses.append(out["loss"].item())
    return losses


def _stack(samples):
    return {k: torch.stack([s[k] for s in samples]) for k in samples[0]}


def test_queue_is_first_in_first_out():
    q = FeatureQueue(dim=2, size=3)
    for v in range(5):
        q.enqueue(torch.full((1, 2), float(v)))
    assert q.keys[:, 0].tolist() == [3.0, 4.0, 2.0] and int(q.pointer) == 2
    q.enqueue(torch.tensor([[7.0, 7.0], [8.0, 8.0]]))  # wraps around
    assert q.keys[:, 0].tolist() == [8.0, 4.0, 7.0]


def test_ema_update_formula():
    student, teacher = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    before = teacher.weight.detach().clone()
    ema_update(teacher, student, 0.9)
    torch.testing.assert_close(teacher.weight, 0.9 * before + 0.1 * student.weight.detach())


def test_info_nce_hand_computed():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0]])
    neg = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    expected = -torch.log(
        torch.exp(torch.tensor(1.0))
        / (torch.exp(torch.tensor(1.0)) + 1 + torch.exp(torch.tensor(-1.0)))
    )
    torch.testing.assert_close(info_nce(q, k, neg, 1.0), expected)


def test_simsiam_stop_gradient_and_learning():
    torch.manual_seed(0)
    m = SimSiam(3, 1, dim=32, pred_dim=8, **TINY)
    gen = paper_view_generator(3, "none", **VIEWS)
    batch = _stack([gen(_volume(i), i) for i in range(4)])
    out = m(batch)
    assert set(out) == {"loss", "collapse_std"} and -1 <= out["loss"].item() <= 1
    # the target branch is detached: a loss on z alone through negative_cosine gives no grad
    z = m.embed(batch["global1"])
    from pcrl_lib.losses import negative_cosine

    negative_cosine(torch.randn_like(z, requires_grad=True), z).backward()
    assert all(p.grad is None for p in m.encoder.parameters())
    losses = _steps(m, batch)
    assert losses[-1] < losses[0]


def test_c2l_teacher_is_ema_and_queue_fills():
    torch.manual_seed(0)
    m = C2L(3, 1, dim=16, queue_size=8, momentum=0.5, **TINY)
    gen = paper_view_generator(3, "none", **VIEWS)
    batch = _stack([gen(_volume(i), i) for i in range(4)])
    teacher_before = copy.deepcopy(m.teacher.state_dict())
    for p in m.student.parameters():
        p.data.add_(1.0)
    out = m(batch)
    k = "head.0.weight"
    torch.testing.assert_close(
        m.teacher.state_dict()[k], 0.5 * teacher_before[k] + 0.5 * m.student.state_dict()[k]
    )
    assert int(m.queue.pointer) == 4 and out["loss"].requires_grad
    assert all(not p.requires_grad for p in m.teacher.parameters())
    # with the negatives held fixed (the queue restored after every step), the loss falls
    torch.manual_seed(1)
    m = C2L(3, 1, dim=16, queue_size=8, momentum=0.9, temperature=0.5, **TINY)
    m.queue.enqueue(m.teacher(batch["global2"]).detach())
    losses = _steps(m, batch, n=10)
    assert losses[-1] < losses[0]


def test_pcrlv1_inputs_and_three_restorations():
    torch.manual_seed(0)
    gen = PCRLv1Inputs(paper_view_generator(3, "none", **VIEWS))
    sample = gen(_volume(), 3)
    assert sample["transform1"].shape == (4,) and sample["global1"].shape == sample[
        "target1"
    ].shape == (1, 16, 16, 8)
    batch = _stack([gen(_volume(i), i) for i in range(4)])
    m = PCRLv1(3, 1, dim=16, queue_size=8, momentum=0.9, temperature=0.5, **TINY)
    m.queue.enqueue(m.teacher(batch["global2"]).detach())
    out = m(batch)
    m.queue.pointer.zero_()
    assert {"contrast", "restoration", "collapse_std"} <= set(out)
    out["loss"].backward()
    assert m.condition[0].weight.grad is not None  # the decoder is conditioned on the flags
    assert all(p.grad is None for p in m.teacher.parameters())
    assert _steps(m, batch, n=10)[-1] < out["loss"].item()


def test_models_genesis_restores_and_learns():
    torch.manual_seed(0)
    gen = GenesisInputs(paper_view_generator(3, "none", **VIEWS))
    batch = _stack([gen(_volume(i), i) for i in range(4)])
    assert batch["input"].shape == batch["target"].shape == (4, 1, 16, 16, 8)
    assert batch["target"].min() >= 0 and batch["target"].max() <= 1
    m = ModelsGenesis(3, 1, **TINY)
    losses = _steps(m, batch, n=12, lr=0.1)
    assert losses[-1] < losses[0]


def test_rubik_turns_are_invertible_and_restored():
    x = np.arange(2 * 8 * 8 * 4, dtype=np.float32).reshape(2, 8, 8, 4)
    for axis, turns in ((2, 1), (2, 3), (0, 2), (1, 2)):
        y = rubik_rotate(x, axis, layer=1, turns=turns)
        assert not np.array_equal(y, x) and np.array_equal(np.sort(y.ravel()), np.sort(x.ravel()))
        back = rubik_rotate(y, axis, layer=1, turns=(4 - turns) % 4)
        np.testing.assert_array_equal(back, x)
    gen = RubikInputs(paper_view_generator(3, "none", **VIEWS))
    batch = _stack([gen(_volume(i), i) for i in range(4)])
    assert not torch.equal(batch["input"], batch["target"])
    torch.manual_seed(0)
    assert (
        _steps(RubikCubePP(3, 1, **TINY), batch, n=12, lr=0.1)[-1]
        < RubikCubePP(3, 1, **TINY)(batch)["loss"].item() + 1
    )


def test_transvw_words_and_loss():
    images = [_volume(i) for i in range(5)]
    triples = discover_visual_words(
        images, n_words=3, k_neighbours=2, word_size=(16, 16, 8), seed=0, background=None
    )
    assert len(triples) == 9 and {w for _, _, w in triples} == {0, 1, 2}
    # every word is cut at the same coordinate in each of the three patients
    for w in range(3):
        rows = [t for t in triples if t[2] == w]
        assert len({c for _, c, _ in rows}) == 1 and len({i for i, _, _ in rows}) == 3
    gen = VisualWordInputs((16, 16, 8), (16, 16, 8), shuffle_blocks=10)
    batch = _stack(
        [
            gen({"image": images[i], "centre": c, "word": w}, k)
            for k, (i, c, w) in enumerate(triples)
        ]
    )
    assert batch["label"].tolist() == [t[2] for t in triples]
    torch.manual_seed(0)
    m = TransVW(3, 1, n_words=3, **TINY)
    out = m(batch)
    torch.testing.assert_close(
        out["loss"].detach(), out["restoration"] + 0.01 * out["classification"]
    )
    assert _steps(m, batch, n=12, lr=0.1)[-1] < out["loss"].item()


def test_cpc_grid_and_causality():
    x = torch.arange(32 * 32 * 16, dtype=torch.float32).view(1, 1, 32, 32, 16)
    patches, grid = grid_patches(x, 16, 8)
    assert grid == (3, 3, 1) and patches.shape == (9, 1, 16, 16, 16)
    torch.testing.assert_close(patches[4], x[0, :, 8:24, 8:24, 0:16])
    m = CPC3D(1, depth=3, width=0.125, patch=8, stride=4, steps=2)
    z = torch.randn(1, m.context.convs[0].in_channels, 5, 3, 3)
    c = m.context(z)
    z2 = z.clone()
    z2[:, :, 3:] += 5.0  # changing later rows leaves earlier contexts unchanged
    torch.testing.assert_close(m.context(z2)[:, :, :3], c[:, :, :3])
    gen = paper_view_generator(3, "none", **{**VIEWS, "global_out": (24, 16, 8)})
    batch = _stack([gen(_volume(i), i) for i in range(3)])
    torch.manual_seed(0)
    losses = _steps(m, batch, n=10, lr=0.05)
    assert losses[-1] < losses[0]


def test_imagenet_weights_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.delenv("PCRL_IMAGENET_WEIGHTS", raising=False)
    with pytest.raises(FileNotFoundError, match="IMAGENET1K_V1"):
        imagenet_resnet18()
    import torchvision

    weights = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    assert imagenet_resnet18(weights) == weights
    from pcrl_lib.models.downstream import Classifier, load_pretrained_encoder

    report = load_pretrained_encoder(Classifier(2, 3, 14), weights)
    assert "fc.weight" in report.unused and len(report.loaded) > 50


def test_registry_errors():
    assert set(METHODS) == {
        "PCRLv2",
        "BYOL",
        "PGL",
        "DrasCLR",
        "SimSiam",
        "C2L",
        "PCRLv1",
        "MG",
        "TransVW",
        "Cube++",
        "3D-CPC",
    }
    with pytest.raises(ValueError, match="no pre-training"):
        get_method("TS", 3)
    with pytest.raises(ValueError, match="3D only|\\(3,\\)D only"):
        get_method("Cube++", 2)
