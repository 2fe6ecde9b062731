"""The pre-training loop's batch plan, logs, checkpoints and budget arithmetic, on a method
small enough that each case runs in milliseconds (the PCRLv2 runs are in test_pretrain.py)."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from pcrl_lib.engine.common import cosine_lr
from pcrl_lib.engine.pretrain import (
    PretrainConfig,
    ViewDataset,
    order_seed,
    pretrain,
    sample_seed,
    snapshot_path,
)


class Recorder(nn.Module):
    """One 1-D convolution (the encoder) whose loss is the mean output; records batch sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Conv1d(1, 1, 3, padding=1)
        self.sizes: list[int] = []

    def forward(self, batch, progress=0.0):
        self.sizes.append(len(batch["x"]))
        return {"loss": self.encoder(batch["x"]).mean(), "progress": torch.tensor(progress)}


def _data(n: int) -> ViewDataset:
    images = [np.full((1, 4), float(i), np.float32) for i in range(n)]
    return ViewDataset(images, lambda image, seed: {"x": torch.from_numpy(image)})


def _run(tmp_path, n, batch, **cfg):
    torch.manual_seed(0)
    method = Recorder()
    config = PretrainConfig(**{"epochs": 1, "batch_size": batch, "progress_bar": False, **cfg})
    summary = pretrain(method, _data(n), config, tmp_path)
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    return method, summary, log


@pytest.mark.parametrize(
    ("n", "batch", "sizes", "note"),
    [
        (5, 4, [4], True),  # 5 < 2 x 4 but a batch of one would be left: dropped
        (3, 4, [3], False),  # a tiny dataset keeps its only (short) batch
        (8, 3, [3, 3], False),  # >= 2 batches: the short last batch is dropped
        (7, 4, [4, 3], False),  # < 2 batches, no batch of one: kept
        (5, 2, [2, 2], True),
        (2, 2, [2], False),  # the smallest dataset: 2 images (batch norm)
    ],
)
def test_batches_of_two_epochs(tmp_path, n, batch, sizes, note):
    method, _, log = _run(tmp_path, n, batch, epochs=2)
    assert method.sizes == sizes * 2
    notes = [x for x in log if x["kind"] == "note"]
    assert notes == (
        [{"kind": "note", "text": "the final batch of one is dropped each epoch"}] if note else []
    )
    assert [x["step"] for x in log if x["kind"] == "step"] == list(range(len(sizes))) * 2


def test_max_steps_counts_whole_batches_when_the_last_is_dropped(tmp_path):
    # 5 images, batch 4: one batch of 4 per epoch (the 1 left is dropped): 2 steps, 2 epochs
    method, summary, _ = _run(tmp_path, 5, 4, max_steps=2)
    assert method.sizes == [4, 4] and summary["epochs_run"] == 2


def test_max_steps_counts_short_batches_as_steps(tmp_path):
    # 3 images, batch 4: one (short) batch per epoch, so 2 steps are 2 epochs
    method, summary, log = _run(tmp_path, 3, 4, max_steps=2)
    assert method.sizes == [3, 3] and summary["epochs_run"] == 2
    assert [x["global_step"] for x in log if x["kind"] == "step"] == [1, 2]


def test_epochs_of_a_step_budget_set_the_cosine_and_progress(tmp_path):
    # 8 images, batch 4: 2 steps per epoch, 4 steps are 2 epochs; the cosine and the
    # progress the method sees run over those 2 epochs
    method, _, log = _run(tmp_path, 8, 4, max_steps=4, lr=0.1)
    steps = [x for x in log if x["kind"] == "step"]
    assert [x["lr"] for x in steps] == pytest.approx(
        [0.1, 0.1, cosine_lr(0.1, 1, 2)] * 1 + [cosine_lr(0.1, 1, 2)]
    )
    assert [x["progress"] for x in steps] == pytest.approx([0.0, 0.0, 0.5, 0.5])


def test_output_folder_is_created_with_its_parents(tmp_path):
    _run(tmp_path / "a" / "b", 4, 2)
    assert (tmp_path / "a" / "b" / "last.pt").exists()


def test_checkpoint_and_snapshots_carry_their_config(tmp_path):
    _, _, _ = _run(tmp_path, 4, 2, max_steps=2, snapshot_steps=(0, 2))
    for path in (tmp_path / "last.pt", snapshot_path(tmp_path, 0), snapshot_path(tmp_path, 2)):
        state = torch.load(path, weights_only=True)
        assert state["config"]["batch_size"] == 2 and state["config"]["max_steps"] == 2
        assert state["config"]["snapshot_steps"] in ([0, 2], (0, 2))


def test_a_checkpoint_without_a_step_resumes_after_its_epoch(tmp_path):
    """Checkpoints written before steps were recorded hold only the epoch: resuming counts
    (epoch + 1) x steps per epoch done."""
    _run(tmp_path, 4, 2, epochs=1)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    del state["step"]
    torch.save(state, tmp_path / "last.pt")
    torch.manual_seed(0)
    method = Recorder()
    cfg = PretrainConfig(batch_size=2, progress_bar=False, epochs=3)
    summary = pretrain(method, _data(4), cfg, tmp_path)
    assert summary["epochs_run"] == 2 and method.sizes == [2, 2, 2, 2]
    log = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [x["global_step"] for x in log if x["kind"] == "step"][-4:] == [3, 4, 5, 6]


def test_bf16_runs_a_method_on_its_device(tmp_path, monkeypatch):
    monkeypatch.setenv("PCRL_CPU_AUTOCAST", "on")  # bf16 even on a CPU without native kernels
    method, summary, _ = _run(tmp_path, 4, 2, dtype="bf16")
    assert summary["epochs_run"] == 1 and method.sizes == [2, 2]


def test_seeds_are_pinned():
    """The committed study's batch orders and views depend on these exact values."""
    assert sample_seed(0, 1, 2) == int(np.random.SeedSequence([0, 1, 2]).generate_state(1)[0])
    assert order_seed(3, 4) == int(np.random.SeedSequence([3, 4, 0, 1]).generate_state(1)[0])
    assert order_seed(0, 0) not in {sample_seed(0, 0, i) for i in range(1000)}


def test_too_few_images_are_refused_by_name(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"^pre-training needs at least 2 images per process \(batch norm\), got 1$",
    ):
        _run(tmp_path, 1, 2)


class Noisy(Recorder):
    """Adds a torch random draw to the loss, so the log shows the random state's course."""

    def forward(self, batch, progress=0.0):
        out = super().forward(batch, progress)
        out["loss"] = out["loss"] + torch.rand(())
        return out


def _losses(path):
    log = [json.loads(x) for x in (path / "log.jsonl").read_text().splitlines()]
    return [(x["global_step"], x["loss"]) for x in log if x["kind"] == "step"]


@pytest.mark.parametrize("first_stop", [1, 2, 3], ids=["inside", "epoch-end", "inside-2nd"])
def test_a_stopped_run_continues_the_random_state_exactly(tmp_path, first_stop):
    """Stopped after ``first_stop`` steps (2 per epoch) and extended to 4: the same losses,
    random draws included, as one run of 4 steps."""
    cfg = PretrainConfig(batch_size=2, progress_bar=False, max_steps=4, lr=0.1)
    torch.manual_seed(0)
    pretrain(Noisy(), _data(4), cfg, tmp_path / "full")
    torch.manual_seed(0)
    pretrain(
        Noisy(),
        _data(4),
        PretrainConfig(**{**cfg.__dict__, "max_steps": first_stop}),
        tmp_path / "staged",
    )
    torch.manual_seed(0)
    again = pretrain(Noisy(), _data(4), cfg, tmp_path / "staged")
    assert again["encoder_drift"] is None
    assert _losses(tmp_path / "staged") == _losses(tmp_path / "full")


def test_a_finished_budget_runs_no_further_step(tmp_path):
    _run(tmp_path, 4, 2, max_steps=3)
    torch.manual_seed(0)
    method = Recorder()
    summary = pretrain(
        method, _data(4), PretrainConfig(batch_size=2, progress_bar=False, max_steps=3), tmp_path
    )
    assert summary["epochs_run"] == 0 and method.sizes == []


def test_epoch_record_and_summary(tmp_path):
    method, summary, log = _run(tmp_path, 8, 4, lr=0.1)
    steps = [x["loss"] for x in log if x["kind"] == "step"]
    (epoch,) = [x for x in log if x["kind"] == "epoch"]
    assert {k: epoch[k] for k in ("epoch", "lr", "steps")} == {"epoch": 0, "lr": 0.1, "steps": 2}
    assert 0 <= epoch["seconds"] < 60 and epoch["loss"] == pytest.approx(sum(steps) / 2)
    assert summary["epochs_run"] == 1 and summary["checkpoint"] == str(tmp_path / "last.pt")
    assert summary["last_epoch_metrics"] == pytest.approx({"loss": sum(steps) / 2, "progress": 0.0})
    # an epoch of one step: its mean is that step's value
    _, summary, log = _run(tmp_path / "one", 3, 4)
    assert summary["last_epoch_metrics"]["loss"] == pytest.approx(
        next(x["loss"] for x in log if x["kind"] == "step")
    )


def test_snapshots_only_at_their_steps(tmp_path):
    _run(tmp_path, 4, 2, max_steps=3, snapshot_steps=(2,))
    assert sorted(p.name for p in tmp_path.glob("step_*.pt")) == ["step_000002.pt"]


def test_progress_bar_names_the_epoch_and_its_length(tmp_path, monkeypatch):
    import pcrl_lib.engine.pretrain as engine

    seen = []
    real = engine._progress

    def spy(batches, cfg, epoch, epochs, total):
        seen.append((epoch, epochs, total))
        return real(batches, cfg, epoch, epochs, total)

    monkeypatch.setattr(engine, "_progress", spy)
    _run(tmp_path, 8, 4, epochs=2, progress_bar=True)
    assert seen == [(0, 2, 2), (1, 2, 2)]
    bar = real(iter([]), PretrainConfig(), 0, 3, 5)
    assert bar.desc == "epoch 1/3" and bar.total == 5 and bar.leave is False


def test_nan_message_names_the_last_good_checkpoint(tmp_path):
    class Poisoned(Recorder):
        def __init__(self, after: int) -> None:
            super().__init__()
            self.after = after

        def forward(self, batch, progress=0.0):
            out = super().forward(batch, progress)
            return (
                {**out, "loss": out["loss"] * float("nan")} if len(self.sizes) > self.after else out
            )

    cfg = PretrainConfig(batch_size=2, progress_bar=False, epochs=2)
    with pytest.raises(FloatingPointError, match=r"The last good checkpoint is .*last\.pt\.$"):
        pretrain(Poisoned(after=2), _data(4), cfg, tmp_path / "later")
    with pytest.raises(
        FloatingPointError, match=r"The last good checkpoint is none \(first epoch\)\.$"
    ):
        pretrain(Poisoned(after=0), _data(4), cfg, tmp_path / "first")


def test_view_dataset_loads_lazily_and_starts_at_epoch_0():
    seen = []
    data = ViewDataset(
        [lambda: np.zeros(2), lambda: np.ones(2)], lambda im, seed: seen.append((im.sum(), seed))
    )
    data[1]
    assert seen == [(2.0, sample_seed(0, 0, 1))]


def test_batch_order_is_the_seeded_permutation_of_each_epoch(tmp_path):
    """Epoch ``e`` visits the images in ``randperm(n)`` seeded by ``order_seed(seed, 0) + e``
    (DistributedSampler's rule), a different order each epoch."""
    torch.manual_seed(0)
    seen = []

    class Order(Recorder):
        def forward(self, batch, progress=0.0):
            seen.extend(int(v) for v in batch["x"][:, 0, 0])
            return super().forward(batch, progress)

    cfg = PretrainConfig(batch_size=4, progress_bar=False, epochs=2, seed=5)
    pretrain(Order(), _data(8), cfg, tmp_path)
    expected = [
        torch.randperm(8, generator=torch.Generator().manual_seed(order_seed(5, 0) + e)).tolist()
        for e in (0, 1)
    ]
    assert seen == expected[0] + expected[1] and expected[0] != expected[1]


def test_the_configured_optimizer_is_used(tmp_path):
    _run(tmp_path, 4, 2, optimizer="adamw", lr=1e-3)
    state = torch.load(tmp_path / "last.pt", weights_only=True)["optimizer"]["state"]
    assert all("exp_avg" in s for s in state.values()) and state


def test_snapshots_hold_the_encoder_only(tmp_path):
    _run(tmp_path, 4, 2, snapshot_steps=(1,))
    model = torch.load(snapshot_path(tmp_path, 1), weights_only=True)["model"]
    assert set(model) == {"encoder.weight", "encoder.bias"}


def test_a_method_without_an_encoder_attribute_is_its_own_encoder(tmp_path):
    class Bare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(1, 1, 3, padding=1)

        def forward(self, batch, progress=0.0):
            return {"loss": self.conv(batch["x"]).mean()}

    torch.manual_seed(0)
    cfg = PretrainConfig(batch_size=2, progress_bar=False, epochs=1, snapshot_steps=(1,))
    summary = pretrain(Bare(), _data(4), cfg, tmp_path)
    assert summary["encoder_drift"]["first"] > 0
    assert set(torch.load(snapshot_path(tmp_path, 1), weights_only=True)["model"]) == {
        "encoder.conv.weight",
        "encoder.conv.bias",
    }


def test_the_device_is_prepared_and_the_loader_gets_its_options(tmp_path, monkeypatch):
    import pcrl_lib.engine.pretrain as engine

    prepared, options = [], []
    real_prepare = engine.prepare_device
    monkeypatch.setattr(
        engine, "prepare_device", lambda d: (prepared.append(d), real_prepare(d))[1]
    )
    monkeypatch.setattr(engine, "loader_options", lambda d: (options.append(d), {"timeout": 0})[1])
    _run(tmp_path, 4, 2, epochs=2, device="cpu")
    assert prepared == ["cpu"]
    assert options == [torch.device("cpu")] * 2  # one loader per epoch


def test_sync_bn_is_ignored_without_a_process_group(tmp_path):
    torch.manual_seed(0)
    method = nn.Sequential(nn.Conv1d(1, 1, 3, padding=1), nn.BatchNorm1d(1))
    wrapper = Recorder()
    wrapper.encoder = method
    cfg = PretrainConfig(epochs=1, batch_size=2, progress_bar=False, sync_bn=True)
    pretrain(wrapper, _data(4), cfg, tmp_path)
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in wrapper.modules())
    assert isinstance(wrapper.encoder[1], nn.BatchNorm1d)


class HalfHead(Recorder):
    """A head used on every other step only, like PCRLv2's scales not drawn in a step."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(1, 1)

    def forward(self, batch, progress=0.0):
        out = super().forward(batch, progress)
        if len(self.sizes) % 2:
            out["loss"] = out["loss"] + self.head(batch["x"][:, :, :1]).mean()
        return out


@pytest.fixture
def one_process_group(tmp_path):
    """A gloo process group of one process in this process: the distributed branch of the
    loop (DDP, all-reduces) runs where mutation testing sees it."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        yield dist
    finally:
        dist.destroy_process_group()


def test_a_process_group_trains_through_ddp_and_averages_the_logged_terms(
    tmp_path, one_process_group, monkeypatch
):
    import pcrl_lib.engine.pretrain as engine

    wrapped, reduced = [], []
    real_reduce = one_process_group.all_reduce

    class Spy(engine.DistributedDataParallel):
        def __init__(self, module, **kwargs):
            wrapped.append(module)
            super().__init__(module, **kwargs)

    def spy_reduce(tensor, *args, **kwargs):
        reduced.append(tensor.clone())
        return real_reduce(tensor, *args, **kwargs)

    monkeypatch.setattr(engine, "DistributedDataParallel", Spy)
    monkeypatch.setattr(one_process_group, "all_reduce", spy_reduce)
    torch.manual_seed(0)
    method = HalfHead()
    head_before = method.head.weight.detach().clone()
    cfg = PretrainConfig(epochs=2, batch_size=2, progress_bar=False, lr=0.1)
    # the head gets no gradient every other step: DDP without find_unused_parameters
    # would stop at the second step
    pretrain(method, _data(4), cfg, tmp_path / "run")
    assert wrapped == [method]
    assert not torch.equal(method.head.weight, head_before)  # trained on its steps
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [x for x in log if x["kind"] == "step"]
    assert len(steps) == 4
    # per step: the finite-loss flag, then the logged terms (loss, progress) stacked
    assert len(reduced) == 8
    terms = reduced[1::2]
    assert all(t.shape == (2,) for t in terms)
    # one process: the mean over processes is the process's own value
    assert [x["loss"] for x in steps] == pytest.approx([float(t[0]) for t in terms])


def test_sync_bn_in_a_process_group_converts_batch_norm(tmp_path, one_process_group):
    torch.manual_seed(0)
    wrapper = Recorder()
    wrapper.encoder = nn.Sequential(nn.Conv1d(1, 1, 3, padding=1), nn.BatchNorm1d(1))
    cfg = PretrainConfig(epochs=1, batch_size=2, progress_bar=False, sync_bn=True)
    # nn.SyncBatchNorm needs GPUs: on the CPU DDP refuses the converted model, which shows
    # the conversion happened
    with pytest.raises(ValueError, match="SyncBatchNorm layers only work with GPU modules"):
        pretrain(wrapper, _data(4), cfg, tmp_path)
