#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): paper-shapes check, 3D/2D steps (fp32, bf16,
# torch.compile), data pipeline, a 200-step pre-training with a resume, DDP on 2 GPUs.
# At most ~8 minutes on one GPU; writes results/benchmarks/gpu_check_<device>.json.
#   bash benchmarks/gpu_check.sh             # on the GPU machine, from the repository root
#   bash benchmarks/gpu_check.sh --dry-run   # tiny shapes on the CPU (make test runs it)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
case " $* " in
  *" --dry-run "*) exec "$PY" benchmarks/gpu_check.py "$@" ;;  # no time limit on a CPU
  *) exec timeout 480 "$PY" benchmarks/gpu_check.py "$@" ;;
esac
