"""The GPU check: what a paper-scale run needs from one device, measured in one go.

    bash benchmarks/gpu_check.sh              # on a GPU machine: at most ~8 minutes
    python benchmarks/gpu_check.py --dry-run  # tiny shapes on the CPU (tested in make test)

Sections, in this order, each timed and recorded even when another fails (its error is
written instead of its numbers); past ``--budget-s`` the remaining sections are skipped
and say so (a GPU run only: the dry run's tiny shapes check that every section works, on
a CPU of any speed and load, so it runs them all):

1. ``device``: the machine, torch, CUDA, the device's peak FLOP/s where known.
2. ``paper_check``: :func:`pcrl_lib.paper_check.check` - two steps of every run of the
   paper grid at the paper's shapes and full batch (accumulating where memory ends), bf16,
   and the grid's device-hours.
3. ``steps``: the PCRLv2 3D and 2D training steps at the paper's shapes and batch, fp32 and
   bf16 (channels-last), ``torch.compile`` off and on (bf16): samples/s, peak memory,
   FLOPs per step (``torch.utils.flop_counter``) and achieved FLOP/s against the peak.
4. ``data``: the 3D view pipeline's samples/s with 0..N DataLoader workers, against what
   the bf16 step consumes.
5. ``pretrain_resume``: a paper-profile PCRLv2 3D pre-training of 200 steps, stopped after
   100 and resumed from its checkpoint: the log must hold steps 1..200 once each.
6. ``ddp``: the same pre-training for 20 steps under ``torchrun`` with 2 processes (2 GPUs;
   the dry run: 2 CPU processes over gloo); skipped, saying why, on one GPU.

Writes one JSON file (default ``results/benchmarks/gpu_check_<device>.json``) and prints it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pcrl_lib.data.phantom import phantom_ct  # noqa: E402
from pcrl_lib.engine.pretrain import PretrainConfig, ViewDataset, pretrain  # noqa: E402
from pcrl_lib.methods.pcrlv2 import PCRLv2, pcrlv2_config  # noqa: E402
from pcrl_lib.perf import (  # noqa: E402
    autocast_context,
    effective_dtype,
    machine_description,
    mixed_input,
    mixed_model,
    prepare_device,
)
from pcrl_lib.pipeline import paper_view_generator  # noqa: E402
from pcrl_lib.profiles import pretrain_settings  # noqa: E402
from pcrl_lib.views import paper_view_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# dense peak FLOP/s by device-name fragment: (bf16, tf32) - vendor data sheets (SXM parts);
# fp32 runs use TF32 on these GPUs (pcrl_lib.perf.prepare_device allows it)
PEAK_FLOPS = {
    "H200": (989e12, 494e12),
    "H100": (989e12, 494e12),
    "A100": (312e12, 156e12),
    "L40S": (362e12, 183e12),
}


def peak_flops(name: str) -> dict | None:
    """``{"bf16", "fp32"}`` peak FLOP/s of a device whose name contains a known part."""
    for part, (bf16, tf32) in PEAK_FLOPS.items():
        if part in name:
            return {"bf16": bf16, "fp32": tf32}
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def section_device(ctx: dict) -> dict:
    device = ctx["device"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else machine_description()
    return {
        "device": str(device),
        "name": name,
        "machine": machine_description(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpus": torch.cuda.device_count(),
        "cpus": os.cpu_count(),
        "peak_flops": peak_flops(name),
    }


def section_paper_check(ctx: dict) -> dict:
    from pcrl_lib import paper_check

    if ctx["dry_run"]:  # two workloads, micro-batch 2: the code path, not the numbers
        return paper_check.check("cpu", 2, "bf16", only=["nih_MG", "finetune_luna"], isolate=False)
    return paper_check.check(ctx["device"], None, "bf16")


def step_setup(dims: int, dry_run: bool) -> tuple[dict, dict, int]:
    """PCRLv2's (paper preset) constructor arguments, a random batch of the paper's view
    shapes (dry run: the smoke profile's) and the batch size."""
    views = paper_view_config(dims)
    channels = 1 if dims == 3 else 3
    if dry_run:
        g, loc, batch = ((32, 32, 16), (8, 8, 8), 2) if dims == 3 else ((32, 32), (16, 16), 2)
        width = 0.125 if dims == 3 else 1.0  # the 2D encoder is ResNet-18 only
    else:
        g, loc = views.global_out, views.local_out
        batch, width = pretrain_settings("paper", dims).batch_size, 1.0
    kw = {"in_channels": channels, "width": width}
    data = {
        k: torch.rand(batch, channels, *g) for k in ("global1", "global2", "target1", "target2")
    }
    data["locals"] = torch.rand(batch, views.n_locals, channels, *loc)
    return kw, data, batch


def time_step(dims: int, dtype: str, compiled: bool, ctx: dict, steps: int) -> dict:
    device = ctx["device"]
    kw, data, batch = step_setup(dims, ctx["dry_run"])
    torch.manual_seed(0)
    model = mixed_model(PCRLv2(pcrlv2_config("paper", dims, **kw)).to(device), dtype)
    batch_dev = {k: mixed_input(v, dtype, device) for k, v in data.items()}
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    # the dry run traces with dynamo but runs the graphs eagerly (inductor's C++ code
    # generation takes minutes on a CPU): the compile path is exercised, its speed is
    # measured on the GPU only
    backend = "eager" if ctx["dry_run"] else "inductor"
    forward = torch.compile(model, backend=backend) if compiled else model

    def step() -> None:
        with autocast_context(dtype, device.type):
            loss = forward(batch_dev)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    tic = time.perf_counter()
    for _ in range(2 if ctx["dry_run"] else 8):  # warm-up; compiles each scale PCRLv2 draws
        step()
    _sync(device)
    warmup_s = time.perf_counter() - tic
    tic = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    step_s = (time.perf_counter() - tic) / steps
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # on the eager model: same arithmetic
        with autocast_context(dtype, device.type):
            loss = model(batch_dev)["loss"]
        loss.backward()
    opt.zero_grad(set_to_none=True)
    flops = counter.get_total_flops()
    peak = (ctx["info"].get("peak_flops") or {}).get(dtype)
    achieved = flops / step_s
    return {
        "dims": dims,
        "dtype": dtype,
        "dtype_used": effective_dtype(dtype, device),
        "compile": compiled,
        "batch": batch,
        "step_s": round(step_s, 4),
        "samples_per_s": round(batch / step_s, 1),
        "warmup_s": round(warmup_s, 1),
        "peak_mb": _peak_mb(device),
        "flops_per_step": flops,
        "achieved_tflops": round(achieved / 1e12, 3),
        "fraction_of_peak": None if peak is None else round(achieved / peak, 3),
    }


def section_steps(ctx: dict) -> list[dict]:
    steps = 2 if ctx["dry_run"] else 10
    configs = [(3, "fp32", False), (3, "bf16", False), (3, "bf16", True)]
    configs += [(2, "fp32", False), (2, "bf16", False), (2, "bf16", True)]
    rows = []
    for dims, dtype, compiled in configs:
        try:
            rows.append(time_step(dims, dtype, compiled, ctx, steps))
        except Exception as err:  # one failing configuration (e.g. compile) keeps the others
            rows.append({"dims": dims, "dtype": dtype, "compile": compiled, "error": repr(err)})
    return rows


def images_3d(n: int, dry_run: bool) -> list[np.ndarray]:
    """``n`` CT phantoms in HU: 160x160x128 at 1 mm (the paper's crops fit), tiny when dry."""
    shape = (48, 48, 40) if dry_run else (160, 160, 128)
    return [phantom_ct(shape, seed=i) for i in range(n)]


def view_generator(dry_run: bool):
    if not dry_run:
        return paper_view_generator(3, "sub")
    return paper_view_generator(3, "sub", **pretrain_settings("smoke", 3).views)


def section_data(ctx: dict) -> dict:
    from torch.utils.data import DataLoader

    dry = ctx["dry_run"]
    batch = 2 if dry else 32
    dataset = ViewDataset(images_3d(4 if dry else 8, dry) * (4 if dry else 32), view_generator(dry))
    cpus = os.cpu_count() or 1
    rows = []
    for workers in sorted({0, min(2, cpus), min(8, cpus), cpus} if not dry else {0, 2}):
        loader = DataLoader(dataset, batch_size=batch, num_workers=workers, shuffle=True)
        it = iter(loader)
        next(it)  # worker start-up
        tic, n = time.perf_counter(), 0
        for _ in range(2 if dry else 6):
            n += len(next(it)["global1"])
        rows.append(
            {"workers": workers, "samples_per_s": round(n / (time.perf_counter() - tic), 1)}
        )
    consumed = next(
        (s["samples_per_s"] for s in ctx["results"].get("steps") or []
         if isinstance(s, dict) and s.get("dims") == 3 and s.get("dtype") == "bf16"
         and not s.get("compile") and "samples_per_s" in s),
        None,
    )  # fmt: skip
    best = max(r["samples_per_s"] for r in rows)
    return {
        "loaders": rows,
        "step_consumes_samples_per_s": consumed,
        "pipeline_over_step": None if not consumed else round(best / consumed, 2),
    }


def pretrain_parts(dry_run: bool, device: torch.device, steps: int, workers: int):
    """PCRLv2 3D (paper preset; smoke-size when dry) with its dataset and config."""
    torch.manual_seed(0)
    width = 0.125 if dry_run else 1.0
    method = PCRLv2(pcrlv2_config("paper", 3, width=width))
    n_unique = 4 if dry_run else 8
    dataset = ViewDataset(
        images_3d(n_unique, dry_run) * (2 if dry_run else 32), view_generator(dry_run)
    )
    s = pretrain_settings("paper", 3)
    cfg = PretrainConfig(
        epochs=s.epochs,
        batch_size=2 if dry_run else s.batch_size,
        lr=s.lr,
        weight_decay=s.weight_decay,
        dtype="bf16",
        device=str(device),
        num_workers=workers,
        progress_bar=False,
        max_steps=steps,
        schedule="constant",
    )
    return method, dataset, cfg


def section_pretrain_resume(ctx: dict) -> dict:
    dry = ctx["dry_run"]
    total = 4 if dry else 200
    workers = 0 if dry else min(8, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as out:
        walls = []
        for upto in (total // 2, total):  # a new process would do the same: build, resume
            method, dataset, cfg = pretrain_parts(dry, ctx["device"], upto, workers)
            tic = time.perf_counter()
            pretrain(method, dataset, cfg, out)
            _sync(ctx["device"])
            walls.append(time.perf_counter() - tic)
        records = [json.loads(x) for x in (Path(out) / "log.jsonl").read_text().splitlines()]
    steps = [r["global_step"] for r in records if r.get("kind") == "step"]
    if steps != list(range(1, total + 1)):
        raise AssertionError(
            f"resume: the log's steps are {steps[:5]}..., not 1..{total} once each"
        )
    losses = [r["loss"] for r in records if r.get("kind") == "step"]
    return {
        "steps": total,
        "resumed_at": total // 2,
        "batch": cfg.batch_size,
        "workers": workers,
        "wall_s": [round(w, 1) for w in walls],
        "steps_per_s": round(total / sum(walls), 2),
        "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)],
        "finite": all(math.isfinite(v) for v in losses),
    }


def section_ddp(ctx: dict) -> dict:
    gpus = torch.cuda.device_count()
    if not ctx["dry_run"] and gpus < 2:
        return {"skipped": f"DDP needs 2 devices; this machine has {gpus} GPU(s)"}
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
            str(Path(__file__).resolve()), "--ddp-worker", out,
        ] + (["--dry-run"] if ctx["dry_run"] else [])  # fmt: skip
        tic = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        wall = time.perf_counter() - tic
        if done.returncode != 0:
            raise RuntimeError(f"torchrun exited {done.returncode}: {done.stderr[-2000:]}")
        result = json.loads((Path(out) / "ddp.json").read_text())
    return {**result, "wall_s": round(wall, 1), "backend": "gloo" if ctx["dry_run"] else "nccl"}


def ddp_worker(out: str, dry_run: bool) -> None:
    """One torchrun process: 20 steps (dry: 2) of the pre-training, SyncBatchNorm on GPUs;
    rank 0 writes ``ddp.json`` with whether both ranks ended with the same weights."""
    import torch.distributed as dist

    from pcrl_lib.engine.distributed import init_from_env

    if dry_run:
        torch.set_num_threads(1)
    rank, world, device = init_from_env()
    steps = 2 if dry_run else 20
    method, dataset, cfg = pretrain_parts(dry_run, device, steps, 0)
    batch = 4 if dry_run else cfg.batch_size  # 2 per process: batch norm needs 2
    cfg = PretrainConfig(**{**cfg.__dict__, "sync_bn": device.type == "cuda", "batch_size": batch})
    tic = time.perf_counter()
    pretrain(method, dataset, cfg, Path(out) / "run")
    wall = time.perf_counter() - tic
    flat = torch.cat([p.detach().float().flatten() for p in method.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        same = all(torch.equal(gathered[0], g) for g in gathered[1:])
        Path(out, "ddp.json").write_text(
            json.dumps(
                {
                    "processes": world,
                    "steps": steps,
                    "train_s": round(wall, 1),
                    "ranks_identical": same,
                }
            )
        )
    dist.barrier()
    dist.destroy_process_group()


SECTIONS = {
    "device": section_device,
    "paper_check": section_paper_check,
    "steps": section_steps,
    "data": section_data,
    "pretrain_resume": section_pretrain_resume,
    "ddp": section_ddp,
}


GPU_BUDGET_S = 450.0  # sections started after this are skipped (gpu_check.sh stops at 480 s)


def run(dry_run: bool, budget_s: float | None, only: list[str] | None = None) -> dict:
    """Every section in order (``only``: those), each result or error recorded; once
    ``budget_s`` seconds are spent (``None``: never) the rest are skipped, saying so."""
    device = prepare_device("cpu" if dry_run else os.environ.get("PCRL_DEVICE") or "cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no GPU visible (use --dry-run on a CPU)")
    ctx = {"device": device, "dry_run": dry_run, "results": {}, "info": {}}
    started = time.perf_counter()
    timings = {}
    for name, fn in SECTIONS.items():
        if only and name not in only and name != "device":
            continue
        spent = time.perf_counter() - started
        if name != "device" and budget_s is not None and spent > budget_s:  # device: its name
            ctx["results"][name] = {"skipped": f"time budget of {budget_s:.0f} s spent"}
            continue
        tic = time.perf_counter()
        try:
            ctx["results"][name] = fn(ctx)
        except Exception as err:
            ctx["results"][name] = {"error": repr(err), "trace": traceback.format_exc()[-3000:]}
        timings[name] = round(time.perf_counter() - tic, 1)
        if name == "device":
            ctx["info"] = ctx["results"]["device"]
    return {
        "dry_run": dry_run,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "section_s": timings,
        "total_s": round(time.perf_counter() - started, 1),
        **ctx["results"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny shapes on the CPU")
    parser.add_argument("--out", default=None, help="the JSON file to write")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="skip sections after this many seconds (default: 450 on a GPU, none in a dry run)",
    )
    parser.add_argument("--only", nargs="+", choices=tuple(SECTIONS), default=None)
    parser.add_argument("--ddp-worker", metavar="DIR", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ddp_worker:
        ddp_worker(args.ddp_worker, args.dry_run)
        # Leave without the interpreter's teardown: under CPU contention a gloo rank that
        # had finished (results written, process group destroyed) sometimes aborted there
        # ("terminate called without an active exception" - a C++ thread destroyed while
        # joinable), which failed the section after it had succeeded: 1 of 6 dry runs beside
        # a busy loop and the study, 0 of 12 with this exit.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    budget = args.budget_s if args.budget_s is not None or args.dry_run else GPU_BUDGET_S
    result = run(args.dry_run, budget, args.only)
    name = re.sub(r"[^A-Za-z0-9]+", "_", result["device"]["name"]).strip("_").lower()
    default = (
        REPO / "results" / "benchmarks" / f"gpu_check_{'dry_run' if args.dry_run else name}.json"
    )
    out = Path(args.out) if args.out else default
    from pcrl_lib.io import write_json_atomic

    write_json_atomic(out, result)
    print(json.dumps({**result, "written": str(out)}, default=str))


if __name__ == "__main__":
    main()
