"""The pairs stage: how an LR scan is made from an HR scan, and what knows that operator.

A *degradation* is a named forward model from the config's
``degradations:`` section: an ``operator`` (:mod:`mrisr.pairs.operators`:
``spline``, ``block``, ``kspace`` or ``slice``) with its settings, and ``noise_std``,
the Rician noise on the LR. :func:`degrade` applies one and makes the LR
scan of every pair; :func:`back_project` and :func:`lr_consistency` use its
operator (never its noise) to move an estimate towards, or measure its
distance from, the volumes that degrade to a given LR scan. ``factor`` is
always how many times coarser the LR grid is than the finer grid (the HR
scan's, or an estimate's).
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ..grids import as_factors, lr_affine_for, lr_shape_for, upsample, voxel_sizes
from ..io import load_volume, save_volume, write_json
from .operators import block_average, kspace_truncate, rician_noise, slice_profile, spline_downsample

log = logging.getLogger(__name__)

OPERATORS = ("spline", "block", "kspace", "slice")


def noise_free(degradation: dict) -> dict:
    """The degradation without its noise: the operator an estimate is compared with the LR through."""
    return {**degradation, "noise_std": 0.0}


def degrade(
    hr_volume: np.ndarray, factor: float | Sequence[float], degradation: dict, rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Simulate a lower-resolution acquisition of ``hr_volume`` with ``degradation`` (see the module docstring).

    Rician noise of ``noise_std`` (a fraction of the intensity range) is
    drawn from ``rng``, which a noisy degradation needs.
    """
    factors = as_factors(factor)
    volume = np.asarray(hr_volume, dtype=np.float32)
    lr_shape = lr_shape_for(volume.shape, factors)
    operator = degradation["operator"]
    if operator == "spline":
        lr_volume = spline_downsample(volume, factors, lr_shape, degradation["order"], degradation["antialias"])
    elif operator == "block":
        lr_volume = block_average(volume, lr_shape)
    elif operator == "kspace":
        lr_volume = kspace_truncate(volume, lr_shape)
    elif operator == "slice":
        lr_volume = slice_profile(volume, lr_shape, degradation["profile"], degradation["gap"])
    else:
        raise ValueError(f"unknown degradation operator {operator!r}; use one of {', '.join(OPERATORS)}")
    if degradation["noise_std"] > 0:
        if rng is None:
            raise ValueError("a noisy degradation needs a seeded random generator (or use noise_free())")
        lr_volume = rician_noise(lr_volume, degradation["noise_std"], rng)
    return lr_volume


def describe(degradation: dict) -> str:
    """A degradation in a few words, for the report."""
    operator = degradation["operator"]
    if operator == "spline":
        text = (f"Gaussian pre-filter, order-{degradation['order']} spline" if degradation["antialias"]
                else f"order-{degradation['order']} spline, no pre-filter")
    elif operator == "slice":
        gap = f", gap {degradation['gap']:g}" if degradation["gap"] else ""
        text = f"thick slices, {degradation['profile']} profile{gap}"
    else:
        text = {"block": "block average", "kspace": "k-space truncation"}[operator]
    return text + (f", Rician noise {degradation['noise_std']:g}" if degradation["noise_std"] > 0 else "")


def back_project(
    estimate: np.ndarray, lr_volume: np.ndarray, factor: float | Sequence[float], degradation: dict, iterations: int,
) -> np.ndarray:
    """Iterative back-projection (Irani & Peleg 1991): ``x <- x + cubic(LR - degrade(x))``, ``iterations`` times.

    Moves ``estimate`` towards the volumes that degrade (with the operator
    of ``degradation``, its noise left out) to exactly ``lr_volume``,
    changing it only where the LR disagrees with it.
    """
    estimate = np.asarray(estimate, dtype=np.float32)
    if lr_shape_for(estimate.shape, factor) != tuple(lr_volume.shape):
        raise ValueError(f"an estimate of shape {estimate.shape} does not degrade by {factor} to the LR's "
                         f"{lr_volume.shape}")
    operator = noise_free(degradation)
    for _ in range(iterations):
        residual = lr_volume - degrade(estimate, factor, operator)
        estimate = estimate + upsample(residual, estimate.shape, "cubic")
    return estimate


def lr_consistency(estimate: np.ndarray, lr_volume: np.ndarray, factor: float | Sequence[float],
                   degradation: dict) -> float:
    """PSNR (dB, data range 1) of the estimate degraded (noise-free) against the LR it came from: does it explain
    the LR?"""
    error = degrade(estimate, factor, noise_free(degradation)) - lr_volume
    mse = float(np.mean(error.astype(np.float64) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(1 / mse))


def write_pair(
    brain_path: str, lr_path: str, grid_path: str, factor: float | Sequence[float], name: str, degradation: dict,
    seed: int,
) -> None:
    """The ``pairs`` stage: the LR scan at ``factor`` made by degradation ``name`` on its own grid, and a JSON
    record of both grids and the degradation.

    The HR scan of the pair is the preprocessed brain itself.
    """
    hr_image = load_volume(brain_path)
    hr_volume = hr_image.get_fdata(dtype=np.float32)
    factors = as_factors(factor)
    lr_volume = degrade(hr_volume, factors, degradation, np.random.default_rng(seed))
    lr_affine = lr_affine_for(hr_image.affine, hr_volume.shape, lr_volume.shape)
    save_volume(lr_volume, lr_affine, lr_path, description=f"mrisr LR x{factors.tolist()}")
    write_json({
        "factor": factors.tolist(),
        "true_factor": (np.asarray(hr_volume.shape) / np.asarray(lr_volume.shape)).tolist(),
        "hr_shape": list(hr_volume.shape), "hr_affine": np.asarray(hr_image.affine).tolist(),
        "hr_voxel_mm": voxel_sizes(hr_image.affine).tolist(),
        "lr_shape": list(lr_volume.shape), "lr_voxel_mm": voxel_sizes(lr_affine).tolist(),
        "degradation": name, **degradation,
    }, grid_path)
    log.info("HR %s -> LR %s (voxels %s mm), degradation %s: %s", hr_volume.shape, lr_volume.shape,
             voxel_sizes(lr_affine).round(3).tolist(), name, describe(degradation))
