"""The reproduction's grid: every pre-training run and every fine-tuning run behind the cells
of Tables I-VIII, and running them so that a run whose result exists is never redone.

A **pre-training run** is (source dataset, method, variant): the LUNA CT volumes (3D), the
NIH X-rays (2D, for the semi-supervised Tables II and IV) or CheXpert (2D, for the transfer
Table VI and Table III's NIH column). A **fine-tuning run** is (task, protocol, label ratio,
method, variant, seed) and may fill cells of several tables - the PCRLv2 run of LUNA->BraTS
at 10 % is Table VII's, Table I's "without skip" and Table III's row 6 at once.

Variants of PCRLv2 (the ``variant`` field of records, see :mod:`pcrl_lib.tables`):
``skip`` (Table I), ``crossed`` (Table II), ``row0`` ... ``row5`` (Table III; row 6 is the
full method). Their switches are :data:`VARIANTS`.

Seeds and draws (:class:`SeedPlan`): an ordinary cell runs ``seeds_all`` fine-tuning seeds
from one pre-training run on the official labelled subset (label draw 0). A **compared cell**
- PCRLv2 and TS at the lowest label ratio of Tables IV-VIII, and the PCRLv2 variants the
ablation checks compare (``compared_variants``) with the full method on their cells - runs
every (pre-training seed, label draw) pair: ``pretrain_seeds`` pre-training runs of the
method, ``label_draws`` patient-clustered labelled subsets (:func:`pcrl_lib.data.splits.label_draw`;
the same draws for every method, fine-tuning seed = draw), so that
:mod:`pcrl_lib.verdicts` can give each check a paired interval over everything that varies.

Where things go (under ``results/<profile>/``): ``pretrain/<source>_<method>[-<variant>]/``
(``last.pt``, ``log.jsonl``, ``summary.json`` when finished, ``failed.json`` when it diverged),
``finetune/<record stem>/`` (``best.pt`` only for the runs the figures need) and
``runs/<task>_<protocol>_r<ratio>_<method>[-<variant>][_p<pre-training seed>][_d<draw>]_s<seed>.json``
(the records tables are built from; ``_p`` / ``_d`` only when not 0). A pre-training run
with seed ``k > 0`` goes to ``pretrain/<source>_<method>[-<variant>]_p<k>/``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from pcrl_lib.io import write_json_atomic
from pcrl_lib.paths import results_root
from pcrl_lib.workers import default_workers, run_jobs

VARIANTS: dict[str, dict] = {
    "": {},
    "skip": {"skip": True},
    "crossed": {"comparison_mode": "crossed"},
    "row0": {"comparison": False, "scales": 1, "crops": "none"},
    "row1": {"restoration": False, "scales": 1, "crops": "none"},
    "row2": {"scales": 1, "crops": "none"},
    "row3": {"scales": 3, "crops": "none"},
    "row4": {"scales": 5, "crops": "none"},
    "row5": {"scales": 5, "crops": "multi"},
}

# Each table: task, protocol, label ratios, pre-training source, methods (rows).
_CT3D = ("TS", "MG", "TransVW", "Cube++", "3D-CPC", "PCRLv1", "PCRLv2")
_XRAY = ("TS", "MG", "TransVW", "C2L", "SimSiam", "PCRLv1", "PCRLv2")


@dataclass(frozen=True)
class TableSpec:
    """The fine-tuning grid of one of Tables IV-VIII (the main tables)."""

    name: str
    task: str
    protocol: str
    ratios: tuple[float, ...]
    source: str
    methods: tuple[str, ...]


MAIN_TABLES: dict[str, TableSpec] = {
    "table4": TableSpec("table4", "nih", "semi", (0.05, 0.1, 0.2, 0.3, 0.4), "nih", _XRAY),
    "table5": TableSpec("table5", "luna", "semi", (0.1, 0.2, 0.3, 0.4), "luna", _CT3D),
    "table6": TableSpec(
        "table6",
        "nih",
        "transfer",
        (0.1, 0.2, 0.3, 0.4, 0.5, 1.0),
        "chexpert",
        ("TS", "IN", *_XRAY[1:]),
    ),
    "table7": TableSpec("table7", "brats", "transfer", (0.1, 0.2, 0.3, 0.4, 1.0), "luna", _CT3D),
    "table8": TableSpec("table8", "lits", "transfer", (0.1, 0.2, 0.3, 0.4, 1.0), "luna", _CT3D),
}

# The ablations: (table, task, protocol, ratio, source, variants), PCRLv2 only.
ABLATIONS: tuple[tuple[str, str, str, float, str, tuple[str, ...]], ...] = (
    ("table1", "nih", "semi", 0.05, "nih", ("", "skip")),
    ("table1", "brats", "transfer", 0.1, "luna", ("", "skip")),
    ("table1", "lits", "transfer", 0.1, "luna", ("", "skip")),
    ("table2", "nih", "semi", 0.05, "nih", ("", "crossed")),
    ("table3", "brats", "transfer", 0.1, "luna", ("row0", "row1", "row2", "row3", "row4", "row5", "")),
    ("table3", "nih", "transfer", 0.5, "chexpert", ("row0", "row1", "row2", "row3", "row4", "row5", "")),
)  # fmt: skip

# Beyond the paper (pcrl_lib/beyond.py): PCRLv2 against its local relatives and BYOL on the
# 3D tasks at their lowest label ratios, every method a compared cell (paired with TS)
BEYOND_METHODS = ("TS", "MG", "BYOL", "PGL", "DrasCLR", "PCRLv2")
BEYOND_CELLS = (("luna", "semi", 0.1), ("lits", "transfer", 0.1), ("brats", "transfer", 0.1))
BEYOND_SOURCE = "luna"

TABLES = ("table1", "table2", "table3", *MAIN_TABLES, "beyond")

# the table whose task (at its lowest ratio) probes each source's pre-trained encoders
PROBE_TABLES = {"luna": "table5", "nih": "table4", "chexpert": "table6"}


@dataclass(frozen=True)
class SeedPlan:
    """How many runs each cell gets, and which cells a profile runs (module docstring).

    ``seeds_all``: fine-tuning seeds of an ordinary cell. ``label_draws``: the label draws
    of a compared cell. ``pretrain_seeds``: the pre-training runs behind a compared cell of
    a pre-trained method; ``paired_draws=True`` pairs them with the draws one to one (draw
    ``d`` fine-tunes from pre-training seed ``d``; ``pretrain_seeds == label_draws``):
    every (pre-training run, labelled subset) unit is independent of the others at a fifth
    of the crossed design's fine-tuning runs; ``False`` crosses every seed with every draw.
    ``compared_variants``: the PCRLv2 variants whose ablation cells are compared cells.
    ``higher_ratio_methods``: the methods run at the ratios above the lowest (``None``:
    every method of the table). ``skip_tables``: tables the profile does not run (their
    cells read ``not run``); ``skip_ablations``: ``(table, task)`` ablation cells it does not
    run (e.g. Table I's NIH column). ``beyond_draws``: the units of the table beyond the
    paper (:data:`BEYOND_CELLS`) are those with a label draw below it (``None``: all);
    ``beyond_tasks``: the cells of that table the profile runs, by task (``None``: all).
    ``fig6_sources``: the sources whose pre-training Fig. 6 draws - PCRLv2 with and without
    skips, seed 0 - run even where Table I is not (its runs are listed by
    :func:`pretrain_runs`)."""

    seeds_all: int
    pretrain_seeds: int
    label_draws: int
    compared_variants: tuple[str, ...] = ("", "skip", "crossed")
    paired_draws: bool = False
    higher_ratio_methods: tuple[str, ...] | None = None
    skip_tables: tuple[str, ...] = ()
    skip_ablations: tuple[tuple[str, str], ...] = ()
    beyond_draws: int | None = None
    beyond_tasks: tuple[str, ...] | None = None
    fig6_sources: tuple[str, ...] = ("luna", "nih")

    def __post_init__(self) -> None:
        if self.paired_draws and self.pretrain_seeds != self.label_draws:
            raise ValueError(
                f"paired_draws needs pretrain_seeds == label_draws, got "
                f"{self.pretrain_seeds} and {self.label_draws}"
            )

    def units(self, pretrained: bool) -> list[tuple[int, int]]:
        """The ``(pre-training seed, label draw)`` pairs of a compared cell."""
        draws = range(self.label_draws)
        if not pretrained:
            return [(0, d) for d in draws]
        if self.paired_draws:
            return [(d, d) for d in draws]
        return [(p, d) for p in range(self.pretrain_seeds) for d in draws]


SEEDS = {
    "smoke": SeedPlan(1, 2, 2, ("", "skip"), paired_draws=True),
    # the demo: 5 independent (pre-training run, label draw) units per compared cell; only
    # the lowest label ratio of each table; the ablation Tables I-III not run (their
    # variants need pre-training runs of their own; Fig. 6 keeps its LUNA pair); the table
    # beyond the paper on LiTS only, 2 units per cell - the cuts that keep the demo, with
    # the budget study's headline table, within 30 minutes on 2 cores (README)
    "demo": SeedPlan(
        1,
        5,
        5,
        paired_draws=True,
        higher_ratio_methods=(),
        skip_tables=("table1", "table2", "table3"),
        beyond_draws=2,
        beyond_tasks=("lits",),
        fig6_sources=("luna",),
    ),
    "paper": SeedPlan(3, 3, 5, tuple(VARIANTS)),
}
# smoke runs each main table at its lowest ratio only (the other cells read "not run")
LOWEST_ONLY = {"smoke": True, "demo": False, "paper": False}


@dataclass(frozen=True)
class PretrainRun:
    """One pre-training run: ``method`` on ``source`` (``luna`` | ``nih`` | ``chexpert``)."""

    source: str
    method: str
    variant: str = ""
    seed: int = 0

    @property
    def name(self) -> str:
        """``<source>_<method>[-<variant>][_p<seed>]``, its folder under ``pretrain/``."""
        tag = f"{self.source}_{self.method}" + (f"-{self.variant}" if self.variant else "")
        return tag + (f"_p{self.seed}" if self.seed else "")

    @property
    def spatial_dims(self) -> int:
        """3 for the CT volumes, 2 for the X-rays."""
        return 3 if self.source == "luna" else 2

    def overrides(self) -> dict:
        """The method's constructor overrides (PCRLv2's ablation switches)."""
        return dict(VARIANTS[self.variant])


@dataclass(frozen=True)
class FinetuneRun:
    """One fine-tuning run; ``pretrain`` is ``None`` for TS and IN."""

    task: str
    protocol: str
    label_ratio: float
    method: str
    variant: str = ""
    seed: int = 0
    pretrain: PretrainRun | None = None
    tables: tuple[str, ...] = field(default=(), compare=False)
    draw: int = 0

    @property
    def pretrain_seed(self) -> int | None:
        """The seed of the pre-training run it starts from (``None``: TS, IN)."""
        return None if self.pretrain is None else self.pretrain.seed

    @property
    def name(self) -> str:
        """The stem of its record file (:func:`pcrl_lib.engine.experiment.record_path`)."""
        from pcrl_lib.engine.experiment import record_stem

        return record_stem(
            self.task,
            self.protocol,
            self.label_ratio,
            self.method,
            self.seed,
            self.variant,
            self.draw,
            self.pretrain_seed or 0,
        )


def _pretrain_for(method: str, source: str, variant: str = "", seed: int = 0) -> PretrainRun | None:
    return None if method in ("TS", "IN") else PretrainRun(source, method, variant, seed)


def finetune_runs(profile: str, tables: tuple[str, ...] = TABLES) -> list[FinetuneRun]:
    """Every fine-tuning run of ``tables`` at ``profile``, each once (runs shared by several
    tables carry all their table names), in a stable order: table by table, ratio by ratio."""
    plan = SEEDS[profile]
    runs: dict[FinetuneRun, set[str]] = {}

    def add(table, task, protocol, ratio, method, variant, source, compared, draws=None):
        if compared:  # every (pre-training seed, label draw) unit; fine-tuning seed = draw
            units = plan.units(method not in ("TS", "IN"))
            triples = [(p, d, d) for p, d in units if draws is None or d < draws]
        else:
            triples = [(0, 0, s) for s in range(plan.seeds_all)]
        for pseed, draw, seed in triples:
            run = FinetuneRun(
                task,
                protocol,
                ratio,
                method,
                variant,
                seed,
                _pretrain_for(method, source, variant, pseed),
                draw=draw,
            )
            runs.setdefault(run, set()).add(table)

    tables = tuple(t for t in tables if t not in plan.skip_tables)
    for table, task, protocol, ratio, source, variants in ABLATIONS:
        if table in tables and (table, task) not in plan.skip_ablations:
            for v in variants:
                compared = v in plan.compared_variants and any(
                    w != "" and w in plan.compared_variants for w in variants
                )
                add(table, task, protocol, ratio, "PCRLv2", v, source, compared)
    if "beyond" in tables:
        for task, protocol, ratio in beyond_cells(profile):
            for method in BEYOND_METHODS:
                add(
                    "beyond",
                    task,
                    protocol,
                    ratio,
                    method,
                    "",
                    BEYOND_SOURCE,
                    True,
                    plan.beyond_draws,
                )
    for spec in MAIN_TABLES.values():
        if spec.name not in tables:
            continue
        ratios = spec.ratios[:1] if LOWEST_ONLY[profile] else spec.ratios
        for ratio in ratios:
            lowest = ratio == spec.ratios[0]
            for method in spec.methods:
                others = plan.higher_ratio_methods
                if not lowest and others is not None and method not in others:
                    continue
                compared = lowest and method in ("TS", "PCRLv2")
                add(spec.name, spec.task, spec.protocol, ratio, method, "", spec.source, compared)
    return [replace(r, tables=tuple(sorted(t))) for r, t in runs.items()]


def pretrain_runs(profile: str, tables: tuple[str, ...] = TABLES) -> list[PretrainRun]:
    """The pre-training runs the fine-tuning runs of ``tables`` need, and those Fig. 6 draws
    (PCRLv2 with and without skips on ``SeedPlan.fig6_sources``), each once, 3D first."""
    needed = {r.pretrain for r in finetune_runs(profile, tables) if r.pretrain is not None}
    needed |= set(fig6_pretrain_runs(profile))
    return sorted(needed, key=lambda p: (p.spatial_dims == 2, p.source, p.method, p.variant))


def beyond_cells(profile: str) -> tuple[tuple[str, str, float], ...]:
    """The cells of the table beyond the paper (:data:`BEYOND_CELLS`) the profile runs."""
    tasks = SEEDS[profile].beyond_tasks
    return tuple(c for c in BEYOND_CELLS if tasks is None or c[0] in tasks)


def fig6_pretrain_runs(profile: str) -> list[PretrainRun]:
    """The pre-training runs of Fig. 6 (restoration MSE with and without skips): PCRLv2 and
    its ``skip`` variant, seed 0, on each of the profile's ``fig6_sources``."""
    return [
        PretrainRun(source, "PCRLv2", variant)
        for source in SEEDS[profile].fig6_sources
        for variant in ("", "skip")
    ]


# ---------------------------------------------------------------------------- running


def output_dir(profile: str, results: str | os.PathLike | None = None) -> Path:
    """``results/<profile>``."""
    return results_root(results) / profile


def pretrain_dir(profile: str, run: PretrainRun, results: str | os.PathLike | None = None) -> Path:
    """``results/<profile>/pretrain/<run name>``: the run's ``last.pt`` and logs."""
    return output_dir(profile, results) / "pretrain" / run.name


def record_file(profile: str, run: FinetuneRun, results: str | os.PathLike | None = None) -> Path:
    """The run's record (:func:`pcrl_lib.engine.experiment.record_path`)."""
    from pcrl_lib.engine.experiment import record_path

    return record_path(profile, run.name, results)


def source_folder(folders: dict[str, Path], source: str) -> Path:
    """The images a source's pre-training reads: LUNA's CT volumes (not its candidates), the
    X-ray datasets as prepared. ``folders``: :func:`pcrl_lib.profiles.ensure_data`'s."""
    return folders[source] / "volumes" if source == "luna" else folders[source]


def run_pretraining(
    profile: str,
    runs: list[PretrainRun],
    folders: dict[str, Path],
    results: str | os.PathLike | None = None,
    workers: int | None = None,
) -> list[dict]:
    """Run every pre-training run that has not finished (no ``summary.json``); an interrupted
    one resumes from its last epoch. A run that diverges writes ``failed.json`` with the error
    and the grid goes on (its cells read ``fail``). ``workers``: runs at a time (default
    :func:`default_workers`). Returns one status row per run."""
    workers = default_workers(profile) if workers is None else workers
    return run_jobs(pretrain_one, [(profile, r, folders, results) for r in runs], workers)


def pretrain_one(
    profile: str, run: PretrainRun, folders: dict[str, Path], results: str | os.PathLike | None
) -> dict:
    """One pre-training run of the grid (see :func:`run_pretraining`); its status row."""
    from pcrl_lib.engine.experiment import run_pretrain
    from pcrl_lib.profiles import pretrain_settings

    out = pretrain_dir(profile, run, results)
    done, failed = out / "summary.json", out / "failed.json"
    if done.is_file() or failed.is_file():
        return {"run": run.name, "status": "done before", "seconds": 0.0}
    start = time.perf_counter()
    try:
        summary = run_pretrain(
            source_folder(folders, run.source),
            pretrain_settings(profile, run.spatial_dims),
            out,
            method=run.method,
            seed=run.seed,
            progress_bar=False,
            **run.overrides(),
        )
        status = "ran"
        if _is_main_process():
            wall = _since(start)
            probe = probe_encoder(profile, run.source, folders, out / "last.pt")
            summary = {**summary, "run": run.name, "wall_s": wall, "probe": probe}
            write_json_atomic(done, summary)
    except FloatingPointError as err:  # a diverged loss (the engine's NaN / Inf check)
        status = "failed"
        if _is_main_process():
            write_json_atomic(failed, {"run": run.name, "error": str(err)})
    return {"run": run.name, "status": status, "seconds": _since(start)}


def probe_encoder(
    profile: str, source: str, folders: dict[str, Path], checkpoint: Path | None
) -> dict:
    """Linear probe of a pre-trained encoder (``None``: the random initialisation) on its
    source's task at the lowest ratio of :data:`PROBE_TABLES`' table, over the profile's
    label draws (:func:`pcrl_lib.engine.experiment.run_probe`)."""
    from pcrl_lib.engine.experiment import run_probe
    from pcrl_lib.profiles import finetune_settings

    spec = MAIN_TABLES[PROBE_TABLES[source]]
    return run_probe(
        spec.task,
        folders[spec.task],
        finetune_settings(profile, spec.task),
        checkpoint,
        spec.protocol,
        spec.ratios[0],
        tuple(range(SEEDS[profile].label_draws)),
    )


def _is_main_process() -> bool:
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0


def pretrain_checkpoint(
    profile: str, run: FinetuneRun, results: str | os.PathLike | None = None
) -> Path | None:
    """The encoder weights ``run`` starts from: ``None`` for TS, the ImageNet file for IN
    (:func:`pcrl_lib.methods.imagenet.imagenet_resnet18`, which says how to get it when
    absent), else the pre-training run's ``last.pt``."""
    if run.method == "TS":
        return None
    if run.method == "IN":
        from pcrl_lib.methods.imagenet import imagenet_resnet18

        return imagenet_resnet18()
    return pretrain_dir(profile, run.pretrain, results) / "last.pt"


def run_finetuning(
    profile: str,
    runs: list[FinetuneRun],
    folders: dict[str, Path],
    results: str | os.PathLike | None = None,
    keep_weights: tuple[FinetuneRun, ...] = (),
    n_boot: int = 1000,
    workers: int | None = None,
) -> list[dict]:
    """Run every fine-tuning run without a record. A run whose pre-training diverged gets a
    record with a NaN metric (its cell reads ``fail``); IN without ImageNet weights on this
    machine is left out with the reason (its cells read ``not run``). Fine-tuned weights are
    kept only for ``keep_weights`` (the figures' runs; such a run is redone when its record
    exists but its weights do not - runs are deterministic per seed). ``workers``: runs at a
    time (default :func:`default_workers`). Returns one status row per run."""
    workers = default_workers(profile) if workers is None else workers
    jobs = [(profile, r, folders, results, r in keep_weights, n_boot) for r in runs]
    return run_jobs(_finetune_one, jobs, workers)


def _finetune_one(
    profile: str, run: FinetuneRun, folders: dict[str, Path], results, keep: bool, n_boot: int
) -> dict:
    from pcrl_lib.engine.experiment import run_finetune
    from pcrl_lib.engine.finetune import write_run_record
    from pcrl_lib.profiles import finetune_settings

    record = record_file(profile, run, results)
    wanted = keep and not weights_file(profile, run, results).is_file()
    if record.is_file() and not wanted:
        return {"run": run.name, "status": "done before", "seconds": 0.0}
    fields = {
        "method": run.method,
        "variant": run.variant,
        "table": ",".join(run.tables),
        "pretrain": run.pretrain.name if run.pretrain else None,
        "pretrain_seed": run.pretrain_seed,
    }
    start = time.perf_counter()
    try:
        checkpoint = pretrain_checkpoint(profile, run, results)
    except FileNotFoundError as err:  # IN without its weights
        return {"run": run.name, "status": f"not run: {err}", "seconds": 0.0}
    if run.pretrain and (pretrain_dir(profile, run.pretrain, results) / "failed.json").is_file():
        write_run_record(
            record,
            **fields,
            task=run.task,
            protocol=run.protocol,
            label_ratio=run.label_ratio,
            seed=run.seed,
            draw=run.draw,
            metrics={"mean": math.nan},
            config=None,
            error=f"pre-training {run.pretrain.name} diverged",
        )
        return {"run": run.name, "status": "fail (pre-training diverged)", "seconds": 0.0}
    work = output_dir(profile, results) / "finetune" / run.name
    run_finetune(
        run.task,
        folders[run.task],
        finetune_settings(profile, run.task),
        work,
        checkpoint=checkpoint,
        protocol=run.protocol,
        label_ratio=run.label_ratio,
        seed=run.seed,
        record=record,
        record_fields=fields,
        n_boot=n_boot,
        draw=run.draw,
    )
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return {"run": run.name, "status": "ran", "seconds": _since(start)}


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 1)


def read_pretrain_log(
    profile: str, run: PretrainRun, results: str | os.PathLike | None = None
) -> list[dict]:
    """The per-epoch lines of a pre-training run's ``log.jsonl`` (empty if it has none)."""
    path = pretrain_dir(profile, run, results) / "log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_pretrain_summary(
    profile: str, run: PretrainRun, results: str | os.PathLike | None = None
) -> dict:
    """A finished pre-training run's ``summary.json`` (:func:`pretrain_one`: the engine's
    summary with ``encoder_drift``, plus ``run`` and ``wall_s``); empty if it has not finished."""
    path = pretrain_dir(profile, run, results) / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def figure_runs(profile: str) -> dict[str, list[FinetuneRun]]:
    """The fine-tuning runs whose weights the figures need (seed 0): Fig. 8a / 9 - CheXpert->NIH
    at 10 % with TransVW, PCRLv1 and PCRLv2; Fig. 8b - LUNA->BraTS at 10 % and 20 %; Fig. 8c -
    LUNA->LiTS at 10 %, 20 % and 30 % (PCRLv2 beside TS). Ratios the profile does not run
    are left out."""
    by_key = {r: r for r in finetune_runs(profile, MAIN_TABLES)}

    def pick(task, protocol, ratios, methods, source):
        out = []
        for ratio in ratios:
            for m in methods:
                key = FinetuneRun(task, protocol, ratio, m, "", 0, _pretrain_for(m, source))
                if key in by_key:
                    out.append(by_key[key])
        return out

    return {
        "fig8a": pick("nih", "transfer", (0.1,), ("TransVW", "PCRLv1", "PCRLv2"), "chexpert"),
        "fig8b": pick("brats", "transfer", (0.1, 0.2), ("TS", "PCRLv2"), "luna"),
        "fig8c": pick("lits", "transfer", (0.1, 0.2, 0.3), ("TS", "PCRLv2"), "luna"),
    }


def weights_file(profile: str, run: FinetuneRun, results: str | os.PathLike | None = None) -> Path:
    """The fine-tuned weights of a run kept for the figures."""
    return output_dir(profile, results) / "finetune" / run.name / "best.pt"


def load_finetuned(
    profile: str,
    run: FinetuneRun,
    folder: str | os.PathLike,
    results: str | os.PathLike | None = None,
):
    """The fine-tuned model of a kept run (:func:`figure_runs`), in eval mode, and the task's
    prepared dataset: ``(model, data)``."""
    import torch

    from pcrl_lib.profiles import finetune_settings
    from pcrl_lib.tasks import get_task

    spec = get_task(run.task)
    data = spec.data(folder)
    settings = finetune_settings(profile, run.task)
    model = spec.model(data, settings.depth, settings.width)
    path = weights_file(profile, run, results)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no fine-tuned weights; run notebooks 04 and 05 first")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval(), data
