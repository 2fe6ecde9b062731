"""The synthetic datasets: deterministic by (seed, index), modality-like statistics, labels
that match what is drawn."""

import numpy as np
import pytest

from pcrl_lib.data.synthetic.ct import synthetic_chest_ct
from pcrl_lib.data.synthetic.fields import smooth_noise
from pcrl_lib.data.synthetic.mri import MODALITIES, synthetic_brain_mri
from pcrl_lib.data.synthetic.xray import NIH_FINDINGS, SYNTHETIC_PREVALENCE, synthetic_chest_xray

SMALL_CT = dict(shape=(64, 64, 48), spacing=(3.0, 3.0, 4.0))


@pytest.fixture(scope="module")
def ct():
    return synthetic_chest_ct(0, 3, **SMALL_CT)


@pytest.fixture(scope="module")
def mri():
    return synthetic_brain_mri(0, 1, (48, 48, 40))


def test_smooth_noise_is_standardised_and_smooth():
    rng = np.random.default_rng(0)
    f = smooth_noise(rng, (64, 64, 32), 8)
    assert f.shape == (64, 64, 32) and f.dtype == np.float32
    assert abs(f.mean()) < 1e-5 and abs(f.std() - 1) < 1e-4
    neighbour_corr = np.corrcoef(f[:-1].ravel(), f[1:].ravel())[0, 1]
    assert neighbour_corr > 0.9  # features span several voxels
    assert smooth_noise(np.random.default_rng(0), (40, 30), 4).shape == (40, 30)


def test_ct_is_deterministic_and_cases_differ(ct):
    again = synthetic_chest_ct(0, 3, **SMALL_CT)
    np.testing.assert_array_equal(ct.image, again.image)
    other = synthetic_chest_ct(0, 4, **SMALL_CT)
    assert not np.array_equal(ct.image, other.image)


def test_ct_intensities_are_hounsfield(ct):
    img = ct.image
    assert img.shape == SMALL_CT["shape"] and ct.spacing == SMALL_CT["spacing"]
    corners = img[:3, :3, :].mean()
    assert -1030 < corners < -970  # air
    assert -900 < np.median(img[ct.lungs]) < -780  # aerated lung (vessels and nodules raise it)
    body = (img > -200) & ~ct.lungs
    assert -50 < np.median(img[body]) < 100  # soft tissue
    assert (img > 250).sum() > 50  # bone


def test_ct_liver_labels_and_nodules_inside_lungs():
    seen_tumour = False
    for index in range(6):
        case = synthetic_chest_ct(1, index, **SMALL_CT)
        assert set(np.unique(case.liver)) <= {0, 1, 2}
        assert (case.liver > 0).mean() > 0.01
        seen_tumour |= bool((case.liver == 2).any())
        assert np.median(case.image[case.liver == 1]) > 20  # liver parenchyma ~60 HU
        for nodule in case.nodules:
            assert case.lungs[nodule.center]
            assert 4 <= nodule.diameter_mm <= 24
        assert len(case.mimics) >= 3
    assert seen_tumour


def test_mri_labels_are_nested_brats_regions(mri):
    seg = mri.seg
    assert set(np.unique(seg)) <= {0, 1, 2, 4}
    wt, tc, et = np.isin(seg, (1, 2, 4)), np.isin(seg, (1, 4)), seg == 4
    assert et.any() and (et <= tc).all() and (tc <= wt).all() and tc.sum() < wt.sum()
    assert (wt <= mri.brain).all()


def test_mri_contrasts_behave_like_their_sequences(mri):
    img = dict(zip(MODALITIES, mri.image, strict=True))
    oedema, et = mri.seg == 2, mri.seg == 4
    healthy = mri.brain & (mri.seg == 0)
    # oedema is bright in T2 and FLAIR; enhancement shows in T1ce more than in T1
    assert img["t2"][oedema].mean() > img["t2"][healthy].mean()
    assert img["flair"][oedema].mean() > img["flair"][healthy].mean()
    assert (
        img["t1ce"][et].mean() / img["t1ce"][healthy].mean()
        > img["t1"][et].mean() / img["t1"][healthy].mean()
    )
    assert (mri.image[:, 0, 0, 0] == 0).all()  # skull-stripped background


def test_xray_labels_follow_prevalence_and_domains_differ():
    labels = np.stack([synthetic_chest_xray(0, i, size=32)[1] for i in range(600)])
    assert labels.shape == (600, len(NIH_FINDINGS))
    np.testing.assert_allclose(labels.mean(0), SYNTHETIC_PREVALENCE, atol=0.05)
    nih, y = synthetic_chest_xray(0, 1, size=64)
    che, _ = synthetic_chest_xray(0, 1, size=64, domain="chexpert")
    assert nih.shape == (64, 64) and nih.min() >= 0 and nih.max() <= 1
    assert not np.allclose(nih, che)
    with pytest.raises(ValueError, match="domain"):
        synthetic_chest_xray(0, 1, domain="mimic")


def test_xray_findings_change_the_picture():
    """Forcing one finding on with the same seed changes the image beyond the noise."""
    none = (0.0,) * 14
    a, _ = synthetic_chest_xray(5, 0, 64, prevalence=none)
    b, _ = synthetic_chest_xray(5, 0, 64, prevalence=none)
    np.testing.assert_array_equal(a, b)
    for k, name in enumerate(NIH_FINDINGS):
        prevalence = tuple(1.0 if j == k else 0.0 for j in range(14))
        with_finding, labels = synthetic_chest_xray(5, 0, 64, prevalence=prevalence)
        without, _ = synthetic_chest_xray(5, 0, 64, prevalence=none)
        assert labels[k] == 1 and labels.sum() == 1
        changed = np.abs(with_finding - without) > 0.02
        assert changed.mean() > 0.001, name  # the finding's pattern, not noise (same stream)
