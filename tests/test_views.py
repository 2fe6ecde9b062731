from dataclasses import replace

import numpy as np
import pytest
import torch

from pcrl_lib.views import (
    Box,
    CropSizes,
    ViewConfig,
    crop_resize,
    enclosing_box,
    iou,
    paper_view_config,
    sample_boxes,
)

PAPER_GLOBALS = {(64, 64, 32), (96, 96, 64), (96, 96, 96), (112, 112, 64)}
PAPER_LOCALS = {(8, 8, 8), (16, 16, 16), (32, 32, 16), (32, 32, 32)}


def test_box_geometry_hand_values():
    a, b = Box((0, 0), (4, 4)), Box((2, 2), (4, 4))
    assert iou(a, b) == pytest.approx(4 / 28)
    assert iou(a, a) == 1.0
    assert iou(a, Box((10, 10), (2, 2))) == 0.0
    assert enclosing_box(a, b) == Box((0, 0), (6, 6))
    assert Box((0, 0), (6, 6)).contains(b) and not b.contains(a)


def test_sub_crop_properties_over_many_seeds():
    cfg = paper_view_config(3, background_value=None)
    shape = (180, 170, 140)
    for seed in range(150):
        vb = sample_boxes(shape, cfg, np.random.default_rng(seed))
        assert iou(vb.global1, vb.global2) >= 0.3
        assert vb.box == enclosing_box(vb.global1, vb.global2)
        assert len(vb.locals) == 6
        assert all(vb.box.contains(loc) for loc in vb.locals)
        assert {vb.global1.size, vb.global2.size} <= PAPER_GLOBALS
        assert all(loc.size in PAPER_LOCALS for loc in vb.locals)
        for g in (vb.global1, vb.global2):
            assert all(s >= 0 and e <= n for s, e, n in zip(g.start, g.stop, shape, strict=True))


def test_sub_crop_2d_properties():
    cfg = paper_view_config(2)
    for seed in range(100):
        vb = sample_boxes((256, 256), cfg, np.random.default_rng(seed))
        assert iou(vb.global1, vb.global2) >= 0.3
        assert all(vb.box.contains(loc) for loc in vb.locals)
        area = vb.global1.volume / 256**2
        assert 0.3 * 0.9 <= area <= 1.0  # rounding of the sides


def test_multi_crop_and_none():
    multi = sample_boxes(
        (200, 200, 150),
        paper_view_config(3, "multi", background_value=None),
        np.random.default_rng(0),
    )
    assert multi.box is None and len(multi.locals) == 6
    none = sample_boxes(
        (200, 200, 150),
        paper_view_config(3, "none", background_value=None),
        np.random.default_rng(0),
    )
    assert none.box is None and none.locals == ()


def test_same_seed_same_boxes():
    cfg = paper_view_config(3, background_value=None)
    a = sample_boxes((150, 150, 120), cfg, np.random.default_rng(7))
    b = sample_boxes((150, 150, 120), cfg, np.random.default_rng(7))
    assert a == b


def test_background_filter_keeps_crops_in_the_body():
    image = np.full((200, 200, 100), -1000.0, dtype=np.float32)
    image[100:, :, :] = 40.0  # only the second half is tissue
    cfg = paper_view_config(3)
    for seed in range(30):
        vb = sample_boxes(image.shape, cfg, np.random.default_rng(seed), image=image)
        for g in (vb.global1, vb.global2):
            crop = image[g.slices]
            assert (crop < -150).mean() <= 0.85


def test_background_only_image_is_an_error():
    image = np.full((130, 130, 100), -1000.0, dtype=np.float32)
    with pytest.raises(ValueError, match="at most 85% of voxels below -150"):
        sample_boxes(
            image.shape, paper_view_config(3, max_tries=5), np.random.default_rng(0), image
        )


def test_official_filter_keeps_the_air_and_lung_crops_the_default_rejects():
    """The released luna_preprocess.py's rule is the complement of this project's: same
    constants (-150 HU, 15 %), the other side kept."""
    image = np.full((200, 200, 100), -1000.0, dtype=np.float32)
    image[100:, :, :] = 40.0
    cfg = paper_view_config(3, preset="official")
    assert cfg.background_keep == "air" and cfg.local_placement == "official"
    for seed in range(30):
        vb = sample_boxes(image.shape, cfg, np.random.default_rng(seed), image=image)
        for g in (vb.global1, vb.global2):
            assert (image[g.slices] >= -150).mean() <= 0.15
    tissue = np.full((130, 130, 100), 40.0, dtype=np.float32)
    with pytest.raises(ValueError, match="at most 15% of voxels at or above -150"):
        sample_boxes(tissue.shape, replace(cfg, max_tries=5), np.random.default_rng(0), tissue)


def test_official_local_placement_ranges_past_the_box_but_stays_in_the_image():
    shape = (150, 150, 120)
    inside = paper_view_config(3, background_value=None)
    official = paper_view_config(3, preset="official", background_value=None)
    past = 0
    for seed in range(40):
        vb = sample_boxes(shape, official, np.random.default_rng(seed))
        for loc in vb.locals:
            assert all(
                a >= 0 and b <= n for a, b, n in zip(loc.start, loc.stop, shape, strict=True)
            )
            # the corner lies in the enclosing box widened by 3 voxels
            assert all(
                a - 3 <= s < b + 3
                for s, a, b in zip(loc.start, vb.box.start, vb.box.stop, strict=True)
            )
            past += not vb.box.contains(loc)
        ref = sample_boxes(shape, inside, np.random.default_rng(seed))
        assert all(ref.box.contains(loc) for loc in ref.locals)
    assert past > 0


def test_crop_larger_than_image_is_an_error():
    with pytest.raises(ValueError, match="does not fit"):
        sample_boxes(
            (50, 50, 20), paper_view_config(3, background_value=None), np.random.default_rng(0)
        )


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="mode"):
        ViewConfig(mode="tiles")
    with pytest.raises(ValueError, match="exactly one"):
        CropSizes()
    with pytest.raises(ValueError, match="scale"):
        CropSizes(scale=(0.5, 0.2))


def test_crop_resize_values_and_shape():
    image = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    out = crop_resize(image, Box((2, 4), (4, 4)), (4, 4))
    assert torch.equal(out, torch.from_numpy(image[:, 2:6, 4:8]))
    half = crop_resize(image, Box((0, 0), (8, 8)), (4, 4))
    assert half.shape == (2, 4, 4)
    assert half[0, 0, 0].item() == pytest.approx(image[0, :2, :2].mean())


def test_crop_resize_returns_float32_also_for_a_crop_of_the_output_size():
    image = np.arange(2 * 4 * 6, dtype=np.int16).reshape(2, 4, 6)
    out = crop_resize(image, Box((0, 0), (4, 6)), (4, 6))
    assert out.dtype == torch.float32 and torch.equal(out, torch.from_numpy(image).float())
    out[0, 0, 0] = -1  # a copy: the image is untouched
    assert image[0, 0, 0] == 0


def test_crop_resize_3d_is_trilinear_without_corner_alignment():
    # a ramp along x of values 0..3 (voxel centres); halving with align_corners=False
    # averages pairs: centres at 0.5 and 2.5
    ramp = torch.arange(4.0).view(1, 4, 1, 1).expand(1, 4, 2, 2).contiguous()
    out = crop_resize(ramp, Box((0, 0, 0), (4, 2, 2)), (2, 2, 2))
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([0.5, 2.5]))


def test_crop_resize_names_the_expected_dims():
    with pytest.raises(
        ValueError, match=r"^crop_resize expects \(C, \*S\) with 3 spatial dims, got \(4, 6\)$"
    ):
        crop_resize(np.zeros((4, 6)), Box((0, 0), (4, 6)), (2, 2, 2))


def test_box_contains_refuses_boxes_of_other_dimensions():
    assert Box((0, 0), (4, 4)).contains(Box((1, 1), (2, 2)))
    with pytest.raises(ValueError):
        Box((0, 0), (4, 4)).contains(Box((0, 0, 0), (1, 1, 1)))


def test_official_local_corner_stays_in_its_window():
    from pcrl_lib.views import _official_local

    rng = np.random.default_rng(0)
    # a window of width one gives its only corner; an empty window gives its start
    assert _official_local((10,), (2,), (3,), (4,), rng).start == (3,)
    assert _official_local((10,), (2,), (3,), (3,), rng).start == (3,)
    # a window reaching past the image is shifted back inside: corner <= n - size
    assert _official_local((10,), (4,), (8,), (9,), rng).start == (6,)
