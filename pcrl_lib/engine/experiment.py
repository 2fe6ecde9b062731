"""One fine-tuning experiment, end to end: the glue the command line and the notebooks share.

protocol + label ratio -> labelled training cases; task -> model (encoder from a
pre-training checkpoint or random: TS); fine-tune with model selection on the validation
split; evaluate on the test split with bootstrap intervals; write the run record.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path

import numpy as np
import torch

from pcrl_lib.data.datasets import located_images, pretraining_images, pretraining_window
from pcrl_lib.data.prepared import PreparedDataset
from pcrl_lib.data.splits import label_draw, semi_supervised, transfer
from pcrl_lib.engine.finetune import (
    FinetuneConfig,
    compact_per_case,
    evaluate,
    finetune,
    recalibrate_batch_norm,
    with_intervals,
    write_run_record,
)
from pcrl_lib.engine.pretrain import PretrainConfig, ViewDataset, pretrain
from pcrl_lib.engine.probe import fit_linear_probe, pooled_features
from pcrl_lib.methods.imagenet import imagenet_resnet18
from pcrl_lib.methods.inputs import VisualWordInputs, discover_visual_words
from pcrl_lib.methods.registry import get_method
from pcrl_lib.models.checkpoints import load_encoder
from pcrl_lib.models.downstream import load_pretrained_encoder
from pcrl_lib.paths import results_root
from pcrl_lib.pipeline import paper_view_generator
from pcrl_lib.profiles import FinetuneSettings, PretrainSettings
from pcrl_lib.tasks import get_task

PROTOCOLS = ("semi", "transfer", "full")


def record_stem(
    task: str,
    protocol: str,
    label_ratio: float,
    method: str,
    seed: int,
    variant: str = "",
    draw: int = 0,
    pretrain_seed: int = 0,
) -> str:
    """``<task>_<protocol>_r<ratio>_<method>[-<variant>][_p<pretrain_seed>][_d<draw>]_s<seed>``
    (``_p`` and ``_d`` only when not 0)."""
    tag = method + (f"-{variant}" if variant else "")
    tag += (f"_p{pretrain_seed}" if pretrain_seed else "") + (f"_d{draw}" if draw else "")
    return f"{task}_{protocol}_r{label_ratio:g}_{tag}_s{seed}"


def record_path(profile: str, stem: str, results: str | os.PathLike | None = None) -> Path:
    """Where a run's record goes (the one naming the tables read, :mod:`pcrl_lib.grid` and the
    command line share): ``results/<profile>/runs/<stem>.json``, ``stem`` from
    :func:`record_stem`."""
    return results_root(results) / profile / "runs" / f"{stem}.json"


def default_device() -> str:
    """``$PCRL_DEVICE`` if set, else ``cuda`` when a GPU is visible, else ``cpu``."""
    return os.environ.get("PCRL_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def finetune_config(
    kind: str, settings: FinetuneSettings, seed: int = 0, n_samples: int | None = None
) -> FinetuneConfig:
    """The engine's :class:`FinetuneConfig` for a task kind at a profile's settings;
    ``n_samples`` (the training set's size) resolves a step budget (``settings.steps``)."""
    epochs, eval_every = settings.schedule(n_samples or settings.batch_size)
    return FinetuneConfig(
        task=kind,
        epochs=epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        dtype=settings.dtype,
        seed=seed,
        patch_size=settings.patch_size,
        overlap=settings.overlap,
        eval_every=eval_every,
        precise_bn=settings.precise_bn,
        eval_batch_size=settings.eval_batch_size,
        optimizer=settings.optimizer,
        device=default_device(),
    )


def labelled_ids(
    train: list[str],
    protocol: str,
    label_ratio: float,
    draw: int = 0,
    patient_of: dict[str, str] | None = None,
) -> list[str]:
    """The labelled training cases of a protocol (see :mod:`pcrl_lib.data.splits`) for label
    draw ``draw`` (0: the official ordered list; ``d > 0``: patients reordered with seed
    ``d``, :func:`pcrl_lib.data.splits.label_draw`)."""
    train = label_draw(train, draw, patient_of)
    if protocol == "semi":
        return semi_supervised(train, label_ratio)["labelled"]
    if protocol == "transfer":
        return transfer(train, label_ratio)
    if protocol == "full":
        return list(train)
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def run_finetune(
    task: str,
    data_folder: str | os.PathLike,
    settings: FinetuneSettings,
    out_dir: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    protocol: str = "semi",
    label_ratio: float = 1.0,
    seed: int = 0,
    record: str | os.PathLike | None = None,
    record_fields: dict | None = None,
    n_boot: int = 1000,
    draw: int = 0,
) -> dict:
    """Fine-tune and test one model; returns the run record (also written to ``record``).

    Args:
        task: ``luna`` | ``nih`` | ``brats`` | ``lits`` (:mod:`pcrl_lib.tasks`).
        data_folder: the role's prepared folder (e.g. ``ensure_data(...)["luna"]``).
        settings: :class:`pcrl_lib.profiles.FinetuneSettings`.
        checkpoint: pre-trained weights for the encoder; ``None`` trains from scratch (TS).
        record_fields: extra record fields (``table``, ``method``...).
        draw: the label draw (:func:`labelled_ids`); the record counts the labelled cases
            and patients.

    The record keeps the test split's per-case results (``per_case``: labels and scores,
    or Dice per case and region) and a digest of the split's ids (``test_split``) for
    paired, hierarchical intervals (:mod:`pcrl_lib.verdicts`).
    """
    spec = get_task(task)
    data = spec.data(data_folder)
    splits = data.splits()
    patients = data.patients
    ids = labelled_ids(splits["train"], protocol, label_ratio, draw, patients)
    torch.manual_seed(seed)
    model = spec.model(data, settings.depth, settings.width)
    if checkpoint is not None:
        load_pretrained_encoder(model, checkpoint)
    names = spec.class_names(data)
    # patches per case: at least enough for one full batch (BN needs more than one sample)
    per_case = max(settings.samples_per_case, math.ceil(settings.batch_size / len(ids)))
    train = spec.dataset(data, ids, settings.patch_size, per_case)
    cfg = finetune_config(spec.kind, settings, seed, len(train))
    started = time.perf_counter()
    fit = finetune(model, train, spec.dataset(data, splits["val"]), cfg, out_dir, names)
    test = evaluate(model, spec.dataset(data, splits["test"]), cfg, names)
    fields = {"table": "", "method": "PCRLv2" if checkpoint else "TS", **(record_fields or {})}
    rec = {
        **fields,
        "task": task,
        "protocol": protocol,
        "label_ratio": label_ratio,
        "seed": seed,
        "draw": draw,
        "labelled_cases": len(ids),
        "labelled_patients": len({patients[i] for i in ids}),
        "metrics": with_intervals(test, spec.kind, n_boot, seed),
        "per_case": compact_per_case(test["per_case"]),
        "test_split": ids_digest(splits["test"]),
        "best_epoch": fit["best_epoch"],
        "best_val": fit["best_val"],
        "checkpoint": str(checkpoint) if checkpoint else None,
        "data": str(data.root),
        "settings": asdict(settings),
        "config": cfg,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    path = Path(record) if record else Path(out_dir) / "record.json"
    write_run_record(path, **rec)
    rec["config"] = asdict(cfg)
    return rec


def run_probe(
    task: str,
    data_folder: str | os.PathLike,
    settings: FinetuneSettings,
    checkpoint: str | os.PathLike | None,
    protocol: str,
    label_ratio: float,
    draws: tuple[int, ...] = (0,),
    c: float = 0.1,
    split: str = "val",
    bn_samples: int = 128,
    per_case: bool = False,
) -> dict:
    """Linear probe of a frozen encoder (a pre-training checkpoint, or the random
    initialisation when ``None``) on a classification task, once per label draw.

    The downstream model is built as fine-tuning builds it (``settings.depth`` /
    ``width``); its batch norms are re-estimated on at most ``bn_samples`` images of every
    draw's labelled subsets together (labels unused), their pooled pyramid features and those
    of ``split``
    are computed once, and :func:`pcrl_lib.engine.probe.fit_linear_probe` fits on each
    draw's labelled subset (:func:`labelled_ids`) and scores ``split`` - the validation
    split by default: a diagnostic of every pre-training run, kept apart from the test split
    the tables are measured on (and about a quarter of its cost).

    Returns:
        ``{"task", "protocol", "label_ratio", "split", "draws", "auroc": [per draw, %],
        "mean"}``; with ``per_case``, also ``"per_case"`` (per draw, the split's labels and
        scores as a fine-tuning record keeps them) and ``"test_split"`` (the digest of the
        split's ids) - what :func:`pcrl_lib.verdicts.paired_difference` needs.
    """
    spec = get_task(task)
    if spec.kind != "classification":
        raise ValueError(f"run_probe: {task} is not a classification task")
    data = spec.data(data_folder)
    splits = data.splits()
    patients = data.patients
    torch.manual_seed(0)
    model = spec.model(data, settings.depth, settings.width)
    if checkpoint is not None:
        load_pretrained_encoder(model, checkpoint)
    subsets = [labelled_ids(splits["train"], protocol, label_ratio, d, patients) for d in draws]
    union = sorted(set().union(*subsets))
    train, held_out = spec.dataset(data, union), spec.dataset(data, splits[split])
    batch = settings.eval_batch_size or settings.batch_size
    cfg = FinetuneConfig(task="classification", epochs=1, batch_size=batch, dtype=settings.dtype)
    # batch-norm statistics from at most bn_samples of the union (evenly spaced): enough
    # for a mean and variance per channel, at a fraction of a pass over every draw's images
    step = max(1, math.ceil(len(union) / bn_samples))
    recalibrate_batch_norm(model, spec.dataset(data, union[::step]), cfg)
    train_x, train_y = pooled_features(model, train, batch, settings.dtype)
    test_x, test_y = pooled_features(model, held_out, batch, settings.dtype)
    row = {i: k for k, i in enumerate(union)}
    scores, cases = [], []
    for ids in subsets:
        rows = [row[i] for i in ids]
        fit = fit_linear_probe(
            train_x[rows], train_y[rows], test_x, test_y, c, keep_scores=per_case
        )
        scores.append(100 * fit["mean"])
        if per_case:
            cases.append(compact_per_case({"y_true": test_y, "y_score": fit["scores"]}))
    out = {
        "task": task,
        "protocol": protocol,
        "label_ratio": label_ratio,
        "split": split,
        "draws": list(draws),
        "auroc": [round(v, 2) for v in scores],
        "mean": round(float(np.nanmean(scores)), 2) if np.isfinite(scores).any() else math.nan,
    }
    if per_case:
        out["per_case"], out["test_split"] = cases, ids_digest(splits[split])
    return out


def ids_digest(ids: list[str]) -> str:
    """A short SHA-256 of an ordered id list: two records whose per-case results are paired
    must carry the same digest of their test split."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def run_pretrain(
    data_folder: str | os.PathLike,
    settings: PretrainSettings,
    out_dir: str | os.PathLike,
    method: str = "PCRLv2",
    preset: str = "paper",
    split: str = "train",
    seed: int = 0,
    num_workers: int = 0,
    progress_bar: bool = True,
    max_steps: int | None = None,
    snapshot_steps: tuple[int, ...] = (),
    **method_overrides,
) -> dict:
    """Pre-train ``method`` (a key of :data:`pcrl_lib.methods.registry.METHODS`) on the
    ``split`` cases of a prepared image dataset (CT volumes or X-rays; the dimension is read
    from the data) and return :func:`pretrain`'s summary plus ``encoder_init`` (the file the
    encoder started from, ``settings.encoder_init``; ``None``: random). ``preset`` and
    ``method_overrides`` go to PCRLv2's :func:`pcrl_lib.methods.pcrlv2_config` (the
    ablations) or to the baseline's constructor. ``max_steps`` / ``snapshot_steps``: stop
    after that many steps, keep the encoder after each of these
    (:class:`pcrl_lib.engine.pretrain.PretrainConfig`; the budget study)."""
    init = encoder_init_file(settings.encoder_init)  # a missing file fails before any work
    data = PreparedDataset(data_folder)
    ids = data.splits((split,))[split]
    dims = data.load(ids[0])["image"].ndim - 1
    spec = get_method(method, dims)
    torch.manual_seed(seed)
    channels = 3 if dims == 2 else 1  # X-rays go through the ResNet-18 stem as RGB
    if method == "PCRLv2":
        method_overrides = {"preset": preset, **method_overrides}
    if method == "TransVW":  # the word search's size goes to the inputs, not the model
        n_words, k_neighbours = transvw_word_counts(
            len(ids), method_overrides.pop("n_words", 50), method_overrides.pop("k_neighbours", 200)
        )
        method_overrides["n_words"] = n_words
    model = spec.build(dims, channels, settings.depth, settings.width, **method_overrides)
    if init is not None:
        load_encoder(model.encoder, init)
    crops = model.config.crops if method == "PCRLv2" else "none"
    view_preset = preset if method == "PCRLv2" else "paper"  # the baselines have none
    window = pretraining_window(data, ids[0])  # by modality: never the CT window on MRI
    base = paper_view_generator(dims, crops, view_preset, window, **(settings.views or {}))
    images = pretraining_images(data, ids, channels)
    if method == "DrasCLR":  # patches located in the anatomy: the recorded frames
        images = located_images(data, ids, channels)
        if "frame" not in data.load(ids[0]):
            print(
                f"{data.root}: no location frames recorded (prepared before they existed); "
                "DrasCLR locates patches by each volume's own extent - prepare the data "
                "again to record them",
                file=sys.stderr,
                flush=True,
            )
    if method == "TransVW":
        images, generator = _visual_words(images, base, n_words, k_neighbours, seed)
    else:
        generator = spec.inputs(base)
    dataset = ViewDataset(images, generator, seed=seed)
    cfg = PretrainConfig(
        epochs=settings.epochs,
        batch_size=min(settings.batch_size, len(images)),
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        dtype=settings.dtype,
        seed=seed,
        num_workers=num_workers,
        progress_bar=progress_bar,
        device=default_device(),
        optimizer=settings.optimizer,
        warmup_steps=settings.warmup_steps,
        schedule=settings.schedule,
        max_steps=max_steps,
        snapshot_steps=tuple(snapshot_steps),
    )
    summary = pretrain(model, dataset, cfg, out_dir)
    return {**summary, "encoder_init": None if init is None else str(init)}


def encoder_init_file(spec: str | os.PathLike | None) -> Path | None:
    """The file :attr:`PretrainSettings.encoder_init` names: ``None`` (random
    initialisation), ``"imagenet"`` (:func:`pcrl_lib.methods.imagenet.imagenet_resnet18`,
    which says how to obtain the file when absent) or a path, which must exist.

    Raises:
        FileNotFoundError: the file is not there.
    """
    if spec is None:
        return None
    if str(spec) == "imagenet":
        return imagenet_resnet18()
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: encoder_init names no file")
    return path


def transvw_word_counts(n_images: int, n_words: int, k_neighbours: int) -> tuple[int, int]:
    """TransVW's number of visual words and of neighbours per word, capped so that an epoch
    (one sample per word instance: ``n_words * (k_neighbours + 1)``) is no longer than one
    pass over the ``n_images`` images - every method then sees as many samples per epoch.
    The official defaults (50 words, 200 neighbours) stay as they are on large datasets."""
    n_words = max(2, min(n_words, n_images // 2))
    k = max(1, min(k_neighbours, n_images // n_words - 1, n_images - 1))
    return n_words, k


def _word_item(load, centre, word) -> dict:
    return {"image": load(), "centre": centre, "word": word}


def _visual_words(images, base, n_words: int, k_neighbours: int, seed: int):
    """TransVW's items (one per word instance) and their input generator."""
    loaded = [load() for load in images]  # the neighbour search needs them all at once
    shape = loaded[0].shape[1:]
    size = tuple(
        min(g, n // 2) if len(shape) == 2 else min(g, n)
        for g, n in zip(base.views.global_out, shape, strict=True)
    )
    background = base.views.background_value
    triples = discover_visual_words(
        loaded,
        n_words,
        k_neighbours,
        size,
        seed,
        intensity=base.intensity,
        background=background,
    )
    items = [partial(_word_item, images[i], c, w) for i, c, w in triples]
    return items, VisualWordInputs(size, tuple(base.views.global_out), base.intensity)
