"""The pairs stage: how an LR scan is made from an HR scan, and what knows that operator.

:func:`degrade` is the forward model (anti-alias filter, spline
downsampling, optional Rician noise) that makes the LR scan of every pair;
:func:`back_project` and :func:`lr_consistency` use the same operator to
move an estimate towards, or measure its distance from, the volumes that
degrade to a given LR scan. ``factor`` is always how many times coarser the
LR grid is than the finer grid (the HR scan's, or an estimate's).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..grids import as_factors, lr_affine_for, lr_shape_for, resample, upsample, voxel_sizes
from ..io import load_volume, save_volume, write_json

log = logging.getLogger(__name__)


def degrade(
    hr_volume: np.ndarray,
    factor: float | Sequence[float],
    order: int,
    antialias: bool,
    noise_std: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Simulate a lower-resolution acquisition of ``hr_volume``.

    Optional Gaussian anti-alias pre-filter (sigma = (f - 1) / 2 HR voxels per
    axis), spline downsampling of ``order``, then optional Rician noise of
    ``noise_std`` (as a fraction of the intensity range, drawn from ``rng``)
    to mimic a lower-field scanner.
    """
    factors = as_factors(factor)
    volume = np.asarray(hr_volume, dtype=np.float32)
    if antialias and np.any(factors > 1):
        volume = ndimage.gaussian_filter(volume, sigma=(factors - 1) / 2, mode="nearest")
    lr_volume = resample(volume, lr_shape_for(volume.shape, factors), order=order)
    if noise_std > 0:
        real = lr_volume + rng.normal(0, noise_std, lr_volume.shape)
        imaginary = rng.normal(0, noise_std, lr_volume.shape)
        lr_volume = np.sqrt(real**2 + imaginary**2).astype(np.float32)
    return lr_volume


def back_project(
    estimate: np.ndarray, lr_volume: np.ndarray, factor: float | Sequence[float], order: int, antialias: bool,
    iterations: int,
) -> np.ndarray:
    """Iterative back-projection (Irani & Peleg 1991): ``x <- x + cubic(LR - degrade(x))``, ``iterations`` times.

    Moves ``estimate`` towards the volumes that degrade (with the operator
    that made the pairs) to exactly ``lr_volume``, changing it only where
    the LR disagrees with it.
    """
    estimate = np.asarray(estimate, dtype=np.float32)
    if lr_shape_for(estimate.shape, factor) != tuple(lr_volume.shape):
        raise ValueError(f"an estimate of shape {estimate.shape} does not degrade by {factor} to the LR's "
                         f"{lr_volume.shape}")
    for _ in range(iterations):
        residual = lr_volume - degrade(estimate, factor, order, antialias)
        estimate = estimate + upsample(residual, estimate.shape, "cubic")
    return estimate


def lr_consistency(estimate: np.ndarray, lr_volume: np.ndarray, factor: float | Sequence[float], order: int,
                   antialias: bool) -> float:
    """PSNR (dB, data range 1) of the degraded estimate against the LR it came from: does it explain the LR?"""
    error = degrade(estimate, factor, order, antialias) - lr_volume
    mse = float(np.mean(error.astype(np.float64) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(1 / mse))


def write_pair(
    brain_path: str, lr_path: str, grid_path: str, factor: float | Sequence[float], order: int, antialias: bool,
    noise_std: float, seed: int,
) -> None:
    """The ``pairs`` stage: the LR scan at ``factor`` on its own grid, and a JSON record of both grids.

    The HR scan of the pair is the preprocessed brain itself.
    """
    hr_image = load_volume(brain_path)
    hr_volume = hr_image.get_fdata(dtype=np.float32)
    factors = as_factors(factor)
    lr_volume = degrade(hr_volume, factors, order, antialias, noise_std, np.random.default_rng(seed))
    lr_affine = lr_affine_for(hr_image.affine, hr_volume.shape, lr_volume.shape)
    save_volume(lr_volume, lr_affine, lr_path, description=f"mrisr LR x{factors.tolist()}")
    write_json({
        "factor": factors.tolist(),
        "true_factor": (np.asarray(hr_volume.shape) / np.asarray(lr_volume.shape)).tolist(),
        "hr_shape": list(hr_volume.shape), "hr_affine": np.asarray(hr_image.affine).tolist(),
        "hr_voxel_mm": voxel_sizes(hr_image.affine).tolist(),
        "lr_shape": list(lr_volume.shape), "lr_voxel_mm": voxel_sizes(lr_affine).tolist(),
        "order": order, "antialias": antialias, "noise_std": noise_std,
    }, grid_path)
    log.info("HR %s -> LR %s (voxels %s mm)", hr_volume.shape, lr_volume.shape,
             voxel_sizes(lr_affine).round(3).tolist())
