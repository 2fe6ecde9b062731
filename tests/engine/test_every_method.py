"""Every pre-training method runs through the one pre-training engine (``run_pretrain``),
in each dimension it is defined for, and leaves an encoder a downstream model can load."""

import numpy as np
import pytest

from pcrl_lib.data.prepared import PreparedWriter
from pcrl_lib.engine.experiment import run_pretrain
from pcrl_lib.methods.registry import METHODS
from pcrl_lib.models.downstream import Classifier, load_pretrained_encoder
from pcrl_lib.profiles import PretrainSettings
from pcrl_lib.views import CropSizes

CASES = [(d, k) for k, spec in METHODS.items() for d in spec.dims]
VIEWS = {
    3: {
        "global_sizes": CropSizes(sizes=((24, 24, 16),)),
        "global_out": (16, 16, 16),
        "local_sizes": CropSizes(sizes=((8, 8, 8),)),
        "local_out": (8, 8, 8),
    },
    2: {"global_out": (32, 32), "local_out": (16, 16)},
}
EXTRA = {"TransVW": {"n_words": 2, "k_neighbours": 2}, "3D-CPC": {"patch": 8, "stride": 8}}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    rng = np.random.default_rng(0)
    out = {}
    for dims, shape, dtype in ((3, (1, 32, 32, 24), np.int16), (2, (1, 40, 40), np.uint8)):
        w = PreparedWriter(root / f"d{dims}", f"toy{dims}", "test", {})
        for i in range(4):
            hi = 1000 if dims == 3 else 255
            w.add(
                f"c{i}",
                f"p{i}",
                image=rng.integers(-600 if dims == 3 else 0, hi, shape).astype(dtype),
            )
        out[dims] = w.finish({"train": [f"c{i}" for i in range(4)]})
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("dims", "key"), CASES, ids=[f"{k}-{d}D" for d, k in CASES])
def test_method_pretrains_through_the_engine(prepared, tmp_path, dims, key):
    width = 0.125 if dims == 3 else 1.0  # the 2D encoder is ResNet-18 as torchvision builds it
    settings = PretrainSettings(epochs=1, batch_size=2, depth=5, width=width, views=VIEWS[dims])
    summary = run_pretrain(
        prepared[dims], settings, tmp_path, method=key, progress_bar=False, **EXTRA.get(key, {})
    )
    assert summary["epochs_run"] == 1 and np.isfinite(summary["last_epoch_metrics"]["loss"])
    model = Classifier(dims, 3 if dims == 2 else 1, 2, depth=5, width=width)
    report = load_pretrained_encoder(model, tmp_path / "last.pt")
    assert report.loaded


def test_transvw_epoch_is_capped_at_one_pass_over_the_images():
    from pcrl_lib.engine.experiment import transvw_word_counts

    assert transvw_word_counts(75_000, 50, 200) == (50, 200)  # the official setting, large data
    for n in (4, 28, 100, 1400):
        words, k = transvw_word_counts(n, 50, 200)
        assert words >= 2 and k >= 1
        assert words * (k + 1) <= max(n, 4)
    assert transvw_word_counts(1400, 50, 200) == (50, 27)


def test_drasclr_says_when_the_data_records_no_location_frames(prepared, tmp_path, capsys):
    settings = PretrainSettings(epochs=1, batch_size=2, depth=5, width=0.125, views=VIEWS[3])
    run_pretrain(prepared[3], settings, tmp_path, method="DrasCLR", progress_bar=False, max_steps=1)
    err = capsys.readouterr().err
    assert f"{prepared[3]}: no location frames recorded" in err and "prepare the data again" in err
