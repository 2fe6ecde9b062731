"""The tiny run under torchrun (2 CPU processes, gloo); each process saves its weights.

python -m torch.distributed.run --standalone --nproc_per_node=2 tests/engine/ddp_run.py OUT METHOD [N_IMAGES]
"""

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pcrl_lib.engine.distributed import init_from_env  # noqa: E402
from pcrl_lib.engine.pretrain import PretrainConfig, pretrain  # noqa: E402
from tests.engine.tiny_run import build  # noqa: E402


def main() -> None:
    torch.set_num_threads(1)
    rank, world, _ = init_from_env()
    out = Path(sys.argv[1])
    n_images = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    method, data, cfg = build(epochs=2, method=sys.argv[2], n_images=n_images)
    cfg = PretrainConfig(**{**cfg.__dict__, "batch_size": 4})
    out.mkdir(parents=True, exist_ok=True)
    torch.save(method.state_dict(), out / f"initial{rank}.pt")  # to show that weights move
    pretrain(method, data, cfg, out)
    torch.save(method.state_dict(), out / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
