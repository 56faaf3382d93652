"""Calibrated uncertainty: a predicted error scale per voxel, and intervals that hold what they claim.

The raw sample sd ranks voxels by how wrong the estimate may be, but is not
an error in the image's units (docs/decisions/0041-calibrated-intervals.md).
Calibration, fitted once per model after training on validation subjects
only, turns it and other features that cost no sampling into:

1. an **error scale** ``s(x) = exp(b + w · f(x))``: a log-linear regression
   of log |error| on the logs of the raw sample sd, the spread of the first
   step's x0 estimates over the mirrored views, the gradient magnitude of
   the cubic interpolation (σ = 1 voxel) and |estimate − cubic|, the local
   means of the spreads and of |estimate − cubic|, plus the cubic intensity
   (tissue), fitted on half of the calibration voxels;
2. **split-conformal quantiles** of the normalised residual |error| / s on
   the other half, so that ``estimate ± q(level) · s`` holds the true value in
   ``level`` of the voxels of exchangeable data.

Everything is stored as plain numbers in the model file
(:mod:`mrisr.model.modelfile`), and applied by the workflow, the CLI and the
apply stage through :func:`error_scale` and :func:`interval_halfwidth`.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import numpy as np
from scipy import ndimage, stats

METHOD = "log-linear error scale, split-conformal quantiles of |error| / scale"
# The features, by name, in the order of the coefficients. Each spread enters as log(value + FLOOR); the local
# ones are means over the voxel's 3 x 3 x 3 neighbourhood (an error rarely stands alone: +0.01 of Spearman rho
# on the validation subject, fitted on one hemisphere and scored on the other).
FEATURES = ("log_sample_sd", "log_view_sd", "log_cubic_gradient", "log_change", "cubic", "cubic_squared",
            "log_local_sample_sd", "log_local_view_sd", "log_local_change")
NEIGHBOURHOOD = 3  # voxels per side
# Image units are [0, 1] (white matter at 0.75): a thousandth is below any error that matters.
FLOOR = 1e-3
GRADIENT_SIGMA = 1.0  # voxels
# Levels of the stored quantile table; a level between two is interpolated.
LEVELS = tuple(float(round(level, 3)) for level in np.concatenate([np.arange(0.05, 0.951, 0.05), [0.975, 0.99]]))
# A small ridge keeps the fit defined where a feature is constant (one sample: no spread at all).
RIDGE = 1e-3


def cubic_gradient(cubic: np.ndarray) -> np.ndarray:
    """Gradient magnitude of the cubic interpolation, Gaussian σ = 1 voxel: an edge detector, no sampling needed."""
    return ndimage.gaussian_gradient_magnitude(np.asarray(cubic, np.float32), GRADIENT_SIGMA)


def feature_maps(cubic: np.ndarray, estimate: np.ndarray, sample_sd: np.ndarray,
                 view_sd: np.ndarray) -> dict[str, np.ndarray]:
    """The calibration's features of every voxel (all on the output grid, image units [0, 1])."""
    cubic = np.asarray(cubic, np.float32)
    change = np.abs(estimate - cubic)

    def local(volume: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(np.asarray(volume, np.float32), NEIGHBOURHOOD)

    return {
        "log_sample_sd": np.log(sample_sd + FLOOR),
        "log_view_sd": np.log(view_sd + FLOOR),
        "log_cubic_gradient": np.log(cubic_gradient(cubic) + FLOOR),
        "log_change": np.log(change + FLOOR),
        "cubic": cubic,
        "cubic_squared": cubic**2,
        "log_local_sample_sd": np.log(local(sample_sd) + FLOOR),
        "log_local_view_sd": np.log(local(view_sd) + FLOOR),
        "log_local_change": np.log(local(change) + FLOOR),
    }


def _design(features: Mapping[str, np.ndarray], names: tuple[str, ...] | list[str]) -> np.ndarray:
    return np.stack([np.asarray(features[name], np.float64).ravel() for name in names], axis=1)


def conformal_quantile(residuals: np.ndarray, level: float) -> float:
    """The split-conformal quantile: the ⌈(n + 1) level⌉-th smallest of n residuals (finite-sample coverage)."""
    ordered = np.sort(np.asarray(residuals, np.float64))
    rank = min(math.ceil((len(ordered) + 1) * level), len(ordered))
    return float(ordered[rank - 1])


def fit_calibration(features: Mapping[str, np.ndarray], error: np.ndarray, seed: int,
                    names: tuple[str, ...] = FEATURES) -> dict:
    """Fit the error scale on a random half of the voxels and the conformal quantiles on the other half.

    ``features`` and ``error`` (estimate − truth) hold the calibration voxels
    (the brains of validation subjects). Returns the calibration as plain
    numbers and lists (what the model file stores).
    """
    error = np.abs(np.asarray(error, np.float64).ravel())
    design = _design(features, names)
    rng = np.random.default_rng(seed)
    fit = rng.random(len(error)) < 0.5
    # Standardised features: the ridge weighs them alike, whatever their units.
    mean, sd = design[fit].mean(axis=0), design[fit].std(axis=0)
    constant = sd <= 1e-6 * (np.abs(mean) + 1)  # e.g. no spread at all with one sample: it gets no weight
    sd[constant] = 1.0
    standard = (design[fit] - mean) / sd
    standard[:, constant] = 0.0
    target = np.log(error[fit] + FLOOR)
    offset = target.mean()
    weights = np.linalg.solve(standard.T @ standard + RIDGE * len(standard) * np.eye(len(names)),
                              standard.T @ (target - offset))
    coefficients = weights / sd
    calibration = {"method": METHOD, "features": list(names), "floor": FLOOR, "gradient_sigma": GRADIENT_SIGMA,
                   "intercept": float(offset - coefficients @ mean), "coefficients": coefficients.tolist()}
    residuals = error[~fit] / _scale(calibration, design[~fit])
    calibration.update(levels=list(LEVELS), quantiles=[conformal_quantile(residuals, level) for level in LEVELS],
                       voxels={"fit": int(fit.sum()), "conformal": int((~fit).sum())})
    return calibration


def _scale(calibration: Mapping, design: np.ndarray) -> np.ndarray:
    return np.exp(calibration["intercept"] + design @ np.asarray(calibration["coefficients"], np.float64))


def error_scale(calibration: Mapping, cubic: np.ndarray, estimate: np.ndarray, sample_sd: np.ndarray,
                view_sd: np.ndarray) -> np.ndarray:
    """The predicted error scale of every voxel (image units), from a fitted calibration."""
    features = feature_maps(cubic, estimate, sample_sd, view_sd)
    return _scale(calibration, _design(features, calibration["features"])).reshape(np.shape(estimate)).astype(
        np.float32)


def interval_halfwidth(calibration: Mapping, level: float) -> float:
    """q(level): ``estimate ± q · scale`` is the interval at ``level`` (interpolated in the stored table)."""
    levels, quantiles = calibration["levels"], calibration["quantiles"]
    if not levels[0] <= level <= levels[-1]:
        raise ValueError(f"interval level {level} outside the calibrated levels [{levels[0]}, {levels[-1]}]")
    return float(np.interp(level, levels, quantiles))


def describe(calibration: Mapping | None, level: float) -> str:
    """One line for a log or a NIfTI description: what the scale and bounds mean."""
    if not calibration:
        return "not calibrated"
    return (f"calibrated {100 * level:g} % interval: estimate ± {interval_halfwidth(calibration, level):.3g} × scale "
            f"(fitted on {', '.join(calibration.get('subjects', [])) or 'validation subjects'})")


def write_interval(write: Callable[[np.ndarray, str, str], None], estimate: np.ndarray, scale: np.ndarray,
                   halfwidth: float, level: float, paths: tuple[str, str, str]) -> None:
    """The error scale and the bounds of the interval at ``level`` (``paths``: scale, lower, upper), each handed to
    ``write(volume, path, description)``, which puts it on the caller's grid."""
    label = f"{100 * level:g} %"
    scale_path, lower_path, upper_path = paths
    write(scale, scale_path, f"mrisr SR error scale; {label} interval: estimate ± {halfwidth:.3g} x scale")
    write(estimate - halfwidth * scale, lower_path, f"mrisr SR lower bound of the {label} interval")
    write(estimate + halfwidth * scale, upper_path, f"mrisr SR upper bound of the {label} interval")


def empirical_coverage(error: np.ndarray, halfwidth: np.ndarray) -> float:
    """The share of voxels whose |error| is within the interval's half-width."""
    return float(np.mean(np.abs(error) <= halfwidth))


def reliability(error: np.ndarray, scale: np.ndarray, calibration: Mapping, levels=LEVELS) -> list[dict]:
    """Nominal against empirical coverage (and mean width) of the calibrated intervals at each of ``levels``."""
    return _coverage_rows(error, lambda level: interval_halfwidth(calibration, level) * scale, levels)


def gaussian_reliability(error: np.ndarray, sd: np.ndarray, levels=LEVELS) -> list[dict]:
    """Coverage of the intervals that take a sample sd for a Gaussian standard error: estimate ± z(level) · sd."""
    return _coverage_rows(error, lambda level: stats.norm.ppf(0.5 + level / 2) * sd, levels)


def _coverage_rows(error: np.ndarray, halfwidth_at: Callable[[float], np.ndarray], levels) -> list[dict]:
    rows = []
    for level in levels:
        halfwidth = halfwidth_at(level)
        rows.append({"level": float(level), "coverage": empirical_coverage(error, halfwidth),
                     "mean_width": float(np.mean(2 * halfwidth))})
    return rows
