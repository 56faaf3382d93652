"""Grids of voxels: downsampling factors, edge-aligned LR and HR grids, spline resampling between them.

Shared by every stage. Grids are aligned by voxel *edges*: each LR voxel covers exactly a block of
``factor`` HR voxels, so an LR voxel centre lies at the centre of its block,
and the LR affine says so. (``scipy.ndimage.zoom`` aligns corner voxel
centres instead and rounds shapes, which shifts the image by a fraction of a
voxel relative to the affine.)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

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


def upsample(lr_volume: np.ndarray, hr_shape: Sequence[int], method: str = "cubic") -> np.ndarray:
    """Interpolate an LR volume to the HR grid with ``nearest``, ``trilinear`` or ``cubic`` splines."""
    if method not in INTERPOLATION_ORDERS:
        raise ValueError(f"unknown interpolation {method!r}; use one of {sorted(INTERPOLATION_ORDERS)}")
    return resample(lr_volume, hr_shape, order=INTERPOLATION_ORDERS[method])


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths in mm along the three array axes."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
