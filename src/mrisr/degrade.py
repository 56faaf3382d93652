"""Low-resolution simulation and interpolation back to the high-resolution grid.

Grids are aligned by voxel *edges*: each LR voxel covers exactly a block of
``factor`` HR voxels, so an LR voxel centre lies at the centre of its block,
and the LR affine says so. (``scipy.ndimage.zoom`` aligns corner voxel
centres instead and rounds shapes, which shifts the image by a fraction of a
voxel relative to the affine.)
"""

from __future__ import annotations

from typing import Sequence

import logging

import numpy as np
from scipy import ndimage

from .io import load_volume, save_volume, voxel_sizes, write_json

log = logging.getLogger(__name__)

INTERPOLATION_ORDERS = {"nearest": 0, "trilinear": 1, "cubic": 3}


def as_factors(factor: float | Sequence[float]) -> np.ndarray:
    """A downsampling factor as three per-axis numbers (a scalar means isotropic)."""
    factors = np.broadcast_to(np.asarray(factor, dtype=np.float64), (3,)).copy()
    if np.any(factors < 1):
        raise ValueError(f"downsampling factors must be >= 1, got {factors.tolist()}")
    return factors


def factor_label(factor: float | list[float]) -> str:
    """A factor as it appears in paths: ``2``, ``1.5`` or ``2x2x4``."""
    factors = as_factors(factor).tolist()
    if len(set(factors)) == 1:
        return f"{factors[0]:g}"
    return "x".join(f"{f:g}" for f in factors)


def lr_shape_for(hr_shape: Sequence[int], factor: float | Sequence[float]) -> tuple[int, ...]:
    """LR grid size: the HR size divided by the factor, rounded, at least 1."""
    return tuple(max(1, int(round(n / f))) for n, f in zip(hr_shape, as_factors(factor)))


def lr_affine_for(hr_affine: np.ndarray, hr_shape: Sequence[int], lr_shape: Sequence[int]) -> np.ndarray:
    """Affine of an LR grid covering the same field of view as the HR grid (edge-aligned)."""
    true_factors = np.asarray(hr_shape, dtype=np.float64) / np.asarray(lr_shape)
    # LR voxel j spans HR voxels [j f, (j+1) f): its centre is HR index j f + (f - 1) / 2.
    voxel_map = np.diag([*true_factors, 1.0])
    voxel_map[:3, 3] = (true_factors - 1) / 2
    return np.asarray(hr_affine, dtype=np.float64) @ voxel_map


def hr_grid_for(lr_affine: np.ndarray, lr_shape: Sequence[int], factor: float | Sequence[float]):
    """HR grid ``(shape, affine)`` that an LR grid of ``factor`` was made from (inverse of the above)."""
    factors = as_factors(factor)
    hr_shape = tuple(int(round(n * f)) for n, f in zip(lr_shape, factors))
    true_factors = np.asarray(hr_shape, dtype=np.float64) / np.asarray(lr_shape)
    voxel_map = np.diag([*(1 / true_factors), 1.0])
    voxel_map[:3, 3] = -(true_factors - 1) / (2 * true_factors)
    return hr_shape, np.asarray(lr_affine, dtype=np.float64) @ voxel_map


def resample(volume: np.ndarray, target_shape: Sequence[int], order: int = 3) -> np.ndarray:
    """Spline-resample ``volume`` onto the edge-aligned grid of ``target_shape`` (same field of view)."""
    volume = np.asarray(volume, dtype=np.float32)
    zoom = np.asarray(target_shape, dtype=np.float64) / np.asarray(volume.shape)
    # grid_mode=True maps voxel edges onto voxel edges, matching the affines above.
    return ndimage.zoom(volume, zoom, order=order, mode="nearest", grid_mode=True, prefilter=order > 1)


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


def upsample(lr_volume: np.ndarray, hr_shape: Sequence[int], method: str = "cubic") -> np.ndarray:
    """Interpolate an LR volume to the HR grid with ``nearest``, ``trilinear`` or ``cubic`` splines."""
    if method not in INTERPOLATION_ORDERS:
        raise ValueError(f"unknown interpolation {method!r}; use one of {sorted(INTERPOLATION_ORDERS)}")
    return resample(lr_volume, hr_shape, order=INTERPOLATION_ORDERS[method])


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
