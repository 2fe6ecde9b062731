"""CPU/GPU speed helpers: mixed precision, channels-last memory format, and the device
settings a GPU run expects (:func:`prepare_device`, :func:`loader_options`).

Measured on a 2-core CPU with AVX-512: bf16 autocast with ``channels_last_3d`` makes 3D
convolution training steps 2-3x faster than fp32 (``benchmarks/pretrain_step.py``). On a CPU
without native bf16 kernels it is the other way round (:func:`effective_dtype`), so the
mixed-precision helpers here run such a CPU in fp32 (contiguous, as every fp32 run:
:func:`channels_last_for`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings

import torch
from torch import nn

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# "auto": mixed precision on the CPU only where its kernels are native; "on": always as
# asked; "off": never on the CPU (CUDA always runs as asked)
CPU_AUTOCAST_ENV = "PCRL_CPU_AUTOCAST"
CPU_AUTOCAST_MODES = ("auto", "on", "off")


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")


@functools.cache
def cpu_native_mixed(dtype: str) -> bool:
    """Whether this CPU has native oneDNN kernels for ``"bf16"`` / ``"fp16"`` (AVX-512 and
    later, AMX; ``"fp32"``: always). Without them torch emulates the type and a convolution
    is an order of magnitude slower than in fp32 - measured on a 2-core AMD EPYC (Zen 3,
    AVX2; torch 2.14.1, 2 threads), one 16->16-channel 3x3x3 convolution forward and
    backward on 8 x 32^3: 0.23 s fp32, 13.2 s bf16 (57x); in 2D (32 x 64^2) 0.05 vs 0.68 s.
    """
    _check_dtype(dtype)
    if DTYPES[dtype] is None:
        return True
    probe = "_is_mkldnn_bf16_supported" if dtype == "bf16" else "_is_mkldnn_fp16_supported"
    try:
        return bool(getattr(torch.ops.mkldnn, probe)())
    except (AttributeError, RuntimeError):  # a torch without the probe: judge by the ISA
        return torch.backends.cpu.get_cpu_capability().startswith("AVX512")


def cpu_autocast_mode() -> str:
    """``$PCRL_CPU_AUTOCAST`` (default ``"auto"``), checked against
    :data:`CPU_AUTOCAST_MODES`."""
    mode = os.environ.get(CPU_AUTOCAST_ENV, "auto").strip().lower() or "auto"
    if mode not in CPU_AUTOCAST_MODES:
        raise ValueError(
            f"{CPU_AUTOCAST_ENV}={mode!r}: must be one of {', '.join(CPU_AUTOCAST_MODES)}"
        )
    return mode


def effective_dtype(dtype: str, device: torch.device | str = "cpu") -> str:
    """The precision a run asked to use ``dtype`` on ``device`` actually uses: ``dtype``
    on CUDA and on a CPU with native kernels for it (:func:`cpu_native_mixed`), ``"fp32"``
    on a CPU without them (an order of magnitude faster there; the rounding differs, so
    results are those of an fp32 run). ``$PCRL_CPU_AUTOCAST``: ``on`` keeps the asked
    precision on any CPU, ``off`` runs every CPU in fp32. Warns once per process when it
    changes the precision."""
    _check_dtype(dtype)
    if DTYPES[dtype] is None or torch.device(device).type != "cpu":
        return dtype
    mode = cpu_autocast_mode()
    if _cpu_runs_mixed(dtype, mode):
        return dtype
    if mode == "auto":
        _warn_fp32_fallback(dtype)
    return "fp32"


def _cpu_runs_mixed(dtype: str, mode: str) -> bool:
    return mode == "on" or (mode == "auto" and cpu_native_mixed(dtype))


@functools.cache
def _warn_fp32_fallback(dtype: str) -> None:
    warnings.warn(
        f"{dtype} autocast asked for on a CPU without native {dtype} kernels (torch CPU "
        f"capability {torch.backends.cpu.get_cpu_capability()}): running in fp32, about 10-50x "
        f"faster here; {CPU_AUTOCAST_ENV}=on forces {dtype}",
        RuntimeWarning,
        stacklevel=3,
    )


def autocast_context(dtype: str, device_type: str = "cpu") -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``"bf16"`` / ``"fp16"`` at their :func:`effective_dtype` on
    ``device_type``; a no-op for ``"fp32"`` (and for mixed precision on a CPU without
    native kernels for it)."""
    used = DTYPES[effective_dtype(dtype, device_type)]
    if used is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=used)


def prepare_device(device: torch.device | str) -> torch.device:
    """``device`` as a ``torch.device``, with the settings of fast GPU training switched on
    for CUDA: ``cudnn.benchmark`` (convolution algorithms chosen per input shape; every
    training input here has one shape) and TF32 matmuls and convolutions in fp32 runs.
    Nothing changes for the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")  # TF32 matmuls
    return device


def loader_options(device: torch.device | str) -> dict:
    """DataLoader keywords for batches bound for ``device``: pinned (page-locked) host
    memory on CUDA, so that :func:`mixed_input`'s non-blocking copy overlaps compute."""
    return {"pin_memory": torch.device(device).type == "cuda"}


def channels_last_for(dtype: str, device: torch.device | str, ndim: int) -> bool:
    """Whether an ``ndim``-D batch (4: 2D images, 5: 3D volumes) and its model's kernels run
    channels-last for ``dtype`` on ``device``: under mixed precision at its
    :func:`effective_dtype` (bf16 with channels-last is the fast combination: 2-3x for 3D
    on AVX-512); fp32 stays contiguous.

    Open question, measured but not adopted: in fp32 on a 2-core AVX2 EPYC, side by side
    (``benchmarks/cpu_layout.py``, one thread), the demo's 3D steps ran 1.1-1.6x faster
    channels-last (three runs), the paper's 3D steps at batch 2 1.03-2.32x (PCRLv2, MG,
    SimSiam, the LUNA classifier, the BraTS U-Net) and the 2D steps 0.82-1.09x; but with 3D
    fp32 channels-last the paper-shapes check in ``make test`` (micro-batch 1) ran over 30
    minutes longer, twice, so some workload those cases miss (LiTS's U-Net was not
    measured) is much slower that way; fp32 stays contiguous until it is found."""
    if ndim not in (4, 5):
        return False
    return DTYPES[effective_dtype(dtype, device)] is not None


def mixed_input(x: torch.Tensor, dtype: str, device: torch.device | str) -> torch.Tensor:
    """A batch moved to ``device`` (non-blocking: asynchronous from pinned memory), laid out
    as :func:`channels_last_for` says (the model follows with :func:`mixed_model`)."""
    x = x.to(device, non_blocking=True)
    return to_channels_last(x) if channels_last_for(dtype, x.device, x.dim()) else x


def mixed_model(model: nn.Module, dtype: str) -> nn.Module:
    """``model`` (in place) with its 2D and 3D kernels laid out as :func:`channels_last_for`
    says for ``dtype`` on the model's device (a model without parameters counts as on the
    CPU): all channels-last under mixed precision, as they are in fp32.

    Measured on the 2-core CPU at one thread, bf16: the demo's quarter-width 3D candidate
    classifier evaluates 2.4x faster channels-last (3.7 vs 8.7 ms per 32^3 candidate).
    Values are those of the contiguous layout up to the kernels' summation order."""
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    ranks = tuple(r for r in (4, 5) if channels_last_for(dtype, device, r))
    return to_channels_last(model, ranks) if ranks else model


def to_channels_last(obj: nn.Module | torch.Tensor, ranks: tuple[int, ...] = (4, 5)):
    """Move a module or a 4D/5D tensor to channels-last (3D: ``channels_last_3d``).

    Modules convert their parameters of the ``ranks`` given (4: 2D kernels, 5: 3D kernels);
    tensors of other ranks are returned as is.
    """
    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    if isinstance(obj, nn.Module):
        for p in obj.parameters():
            if p.dim() in ranks and p.dim() in formats:
                p.data = p.data.contiguous(memory_format=formats[p.dim()])
        return obj
    if obj.dim() in formats:
        return obj.contiguous(memory_format=formats[obj.dim()])
    return obj


def machine_description() -> str:
    """The machine a measurement ran on, for result files: the CUDA device's name when
    torch sees one, else the CPU model (``/proc/cpuinfo``) and torch's thread count, and
    the torch version - e.g. ``"AMD EPYC 9554 64-Core Processor, 2 threads, torch 2.14.1"``;
    a CPU whose bf16 runs are fp32 runs (:func:`effective_dtype`) says ``"bf16 as fp32"``
    after its threads, and one that runs bf16 without native kernels (``PCRL_CPU_AUTOCAST=on``
    there) ``"bf16 emulated"`` - the two round differently from a native-bf16 CPU's runs."""
    import platform

    if torch.cuda.is_available():
        where = torch.cuda.get_device_name(0)
    else:
        where = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as handle:
                models = [
                    ln.split(":", 1)[1].strip() for ln in handle if ln.startswith("model name")
                ]
            where = models[0] if models else where
        except OSError:
            pass
        where = f"{where}, {torch.get_num_threads()} threads"
        if not _cpu_runs_mixed("bf16", cpu_autocast_mode()):  # as effective_dtype runs it
            where = f"{where}, bf16 as fp32"
        elif not cpu_native_mixed("bf16"):
            where = f"{where}, bf16 emulated"
    return f"{where}, torch {torch.__version__.split('+')[0]}"
