"""A tiny PCRLv2 pre-training run, used by the engine tests (also as a subprocess):

python tests/engine/tiny_run.py OUT_DIR EPOCHS
"""

import sys

import torch

from pcrl_lib.data.phantom import phantom_ct
from pcrl_lib.engine.pretrain import PretrainConfig, ViewDataset, pretrain
from pcrl_lib.methods import PCRLv2, pcrlv2_config
from pcrl_lib.pipeline import paper_view_generator
from pcrl_lib.views import CropSizes


class TinyRestorer(torch.nn.Module):
    """A method without batch norm: restore target1 from global1 with one conv (MSE)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, 1, 3, padding=1)

    def forward(self, batch, progress=0.0):
        loss = torch.nn.functional.mse_loss(self.conv(batch["global1"]), batch["target1"])
        return {"loss": loss}


def build(epochs: int, seed: int = 0, method: str = "pcrlv2", n_images: int = 4):
    """Method, dataset and config of the tiny run (``method``: "pcrlv2" or "restorer";
    ``n_images`` phantom CTs)."""
    gen = paper_view_generator(
        3,
        global_sizes=CropSizes(sizes=((24, 24, 24), (32, 32, 32))),
        local_sizes=CropSizes(sizes=((8, 8, 8), (12, 12, 12))),
        global_out=(16, 16, 16),
        local_out=(8, 8, 8),
        n_locals=2,
    )
    images = [phantom_ct((48, 48, 40), seed=i) for i in range(n_images)]
    torch.manual_seed(seed)  # the initial weights
    if method == "restorer":
        model = TinyRestorer()
    else:
        model = PCRLv2(pcrlv2_config("paper", 3, width=0.0625, depth=3, scales=3))
    cfg = PretrainConfig(epochs=epochs, batch_size=2, seed=seed, progress_bar=False)
    return model, ViewDataset(images, gen, seed=seed), cfg


def main() -> None:
    out_dir, epochs = sys.argv[1], int(sys.argv[2])
    method, data, cfg = build(epochs)
    pretrain(method, data, cfg, out_dir)


if __name__ == "__main__":
    main()
