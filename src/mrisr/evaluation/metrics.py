"""Image-quality metrics: PSNR, 3D SSIM and high-frequency error, in a mask and overall."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import laplace
from skimage.metrics import structural_similarity


def psnr(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over ``mask`` (all voxels when ``None``)."""
    error = (np.asarray(reference, np.float64) - np.asarray(estimate, np.float64)) ** 2
    mse = float(error[mask].mean() if mask is not None else error.mean())
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


SSIM_WINDOW = 7


def ssim_map(reference: np.ndarray, estimate: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Voxel-wise 3D SSIM (scikit-image defaults: 7x7x7 uniform window).

    Voxels within half a window of the border are set to NaN: scikit-image
    leaves them out of its mean SSIM, and so do the averages here.
    """
    _, full = structural_similarity(
        np.asarray(reference, np.float64), np.asarray(estimate, np.float64),
        data_range=data_range, full=True, win_size=SSIM_WINDOW,
    )
    border = SSIM_WINDOW // 2
    interior = np.full(full.shape, np.nan)
    core = tuple(slice(border, n - border) for n in full.shape)
    interior[core] = full[core]
    return interior


def ssim(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """Mean 3D SSIM over ``mask`` (all voxels when ``None``); equals scikit-image's value without a mask."""
    full = ssim_map(reference, estimate, data_range)
    return float(np.nanmean(full[mask] if mask is not None else full))


def high_frequency_error(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray | None = None) -> float:
    """RMS difference of Laplacians: how far the fine detail (edges) is from the reference.

    Lower is sharper-and-right; a blurred estimate scores high even when its PSNR is good.
    """
    difference = laplace(np.asarray(reference, np.float64)) - laplace(np.asarray(estimate, np.float64))
    values = difference[mask] if mask is not None else difference
    return float(np.sqrt(np.mean(values**2)))


def evaluate_volume(
    reference: np.ndarray, estimate: np.ndarray, brain_mask: np.ndarray, data_range: float = 1.0
) -> dict[str, float]:
    """PSNR, SSIM and high-frequency error inside the brain mask and over the whole volume."""
    brain_mask = np.asarray(brain_mask, bool)
    full_ssim = ssim_map(reference, estimate, data_range)
    return {
        "psnr_brain": psnr(reference, estimate, brain_mask, data_range),
        "ssim_brain": float(np.nanmean(full_ssim[brain_mask])),
        "psnr_whole": psnr(reference, estimate, None, data_range),
        "ssim_whole": float(np.nanmean(full_ssim)),
        "hf_error_brain": high_frequency_error(reference, estimate, brain_mask),
    }
