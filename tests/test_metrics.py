"""PSNR/SSIM against known values; masks select the same voxels for every method."""
import numpy as np
import pytest

from mrisr.evaluation.metrics import high_frequency_error, psnr, ssim


def test_psnr_of_a_constant_error():
    reference = np.zeros((8, 8, 8))
    assert psnr(reference, reference + 0.1) == pytest.approx(20.0)
    assert psnr(reference, reference + 0.01) == pytest.approx(40.0)
    assert psnr(reference, reference) == float("inf")


def test_psnr_in_a_mask_uses_only_masked_voxels():
    reference = np.zeros((8, 8, 8))
    estimate = reference.copy()
    estimate[:4] = 0.1
    mask = np.zeros_like(reference, bool)
    mask[:4] = True
    assert psnr(reference, estimate, mask) == pytest.approx(20.0)
    assert psnr(reference, estimate, ~mask) == float("inf")
    assert psnr(reference, estimate) == pytest.approx(20 + 10 * np.log10(2))


def test_ssim_identity_and_degradation():
    rng = np.random.default_rng(0)
    reference = rng.random((20, 20, 20))
    assert ssim(reference, reference) == pytest.approx(1.0)
    noisy = reference + rng.normal(0, 0.2, reference.shape)
    assert ssim(reference, noisy) < 0.9
    # Known value: for a constant offset c on a constant image, SSIM = (2 mu(mu+c) + C1) / (mu^2 + (mu+c)^2 + C1).
    constant = np.full((16, 16, 16), 0.5)
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * 0.5 * 0.6 + c1) / (0.5**2 + 0.6**2 + c1)
    assert ssim(constant, constant + 0.1) == pytest.approx(expected, rel=1e-6)


def test_high_frequency_error_prefers_sharp_over_blurred():
    from scipy.ndimage import gaussian_filter

    reference = np.random.default_rng(1).random((24, 24, 24))
    assert high_frequency_error(reference, reference) == 0
    assert high_frequency_error(reference, gaussian_filter(reference, 1.5)) > 0.5
