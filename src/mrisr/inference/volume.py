"""Super-resolving one LR file of the workflow (a test pair's LR scan) through one model or a cascade of them.

The LR scans of the pairs are preprocessed brains already (in [0, 1], skull
stripped, on a grid the pair records); a user's own scan goes through
:mod:`mrisr.inference.scan` instead.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..figures import comparison_panel, reliability_figure
from ..grids import hr_grid_for, voxel_sizes
from ..io import MrisrError, load_volume, save_volume, write_json
from ..model.modelfile import condition_image, load_model, read_calibration, save_calibrated
from ..model.networks import resolve_device
from ..preprocess.orientation import canonical_grid, to_canonical, to_scan_order
from .calibration import (describe, error_scale, feature_maps, fit_calibration, gaussian_reliability,
                          interval_halfwidth, reliability, write_interval)
from .sampling import super_resolve

log = logging.getLogger(__name__)


@dataclass
class SrOutputs:
    """Where the super_resolve stage writes: the estimate and its two spreads, and with a calibrated model its
    error scale and the bounds of the interval at ``interval``."""

    estimate: str
    sd: str
    view_sd: str
    scale: str | None = None
    lower: str | None = None
    upper: str | None = None
    scale_sidecar: str | None = None  # JSON: the interval's level and the calibration (read without torch)
    interval: float = 0.0


def super_resolve_pair(lr_path: str, grid_path: str, stages: Sequence[tuple[str, dict]], outputs: SrOutputs,
                       seed: int) -> None:
    """The super_resolve stage: a pair's LR scan through one model or a cascade of them onto the pair's HR grid.

    ``stages`` are ``(model file, sampler settings)`` applied in turn (a
    cascade passes each stage's estimate to the next); the final grid is the
    one the pair's ``pair.json`` records. Sampling runs in the RAS voxel
    order the models learnt in; the outputs are written in the pair's own.
    The calibrated maps are written when ``outputs.scale`` is set; they need
    a calibrated model (a cascade's calibration would be its last stage's,
    fitted on real LR scans, not on an earlier stage's estimate).
    """
    lr_image = load_volume(lr_path)
    canonical = to_canonical(lr_image)
    volume, affine = np.clip(canonical.get_fdata(dtype=np.float32), 0, 1), canonical.affine
    for index, (model_path, settings) in enumerate(stages):
        spec, network = load_model(model_path, resolve_device(settings["device"]))
        shape, affine = hr_grid_for(affine, volume.shape, spec.step_factor)
        if index == len(stages) - 1:
            grid = json.loads(Path(grid_path).read_text())
            shape, affine = canonical_grid(tuple(grid["hr_shape"]), np.asarray(grid["hr_affine"]))
        log.info("stage %d/%d: %s (%s) -> %s voxels", index + 1, len(stages), model_path, spec.kind, shape)
        cubic = condition_image(volume, shape)
        sampled = super_resolve(volume, shape, spec, network, settings, seed)
        volume = sampled.estimate
    calibration = read_calibration(stages[-1][0]) if len(stages) == 1 else None

    def write(data: np.ndarray, path: str, description: str) -> None:
        save_volume(to_scan_order(data, affine, lr_image.affine)[0], scan_affine, path, description=description)

    estimate, scan_affine = to_scan_order(sampled.estimate, affine, lr_image.affine)
    save_volume(estimate, scan_affine, outputs.estimate, description="mrisr SR estimate")
    write(sampled.sd, outputs.sd, "mrisr SR sample sd (raw, not an error scale)")
    write(sampled.view_sd, outputs.view_sd, "mrisr SR sd of the first step's mirrored views")
    if outputs.scale:
        if calibration is None:
            raise MrisrError(f"{stages[-1][0]}: no calibration in this model file, so no error scale or interval")
        scale = error_scale(calibration, cubic, sampled.estimate, sampled.sd, sampled.view_sd)
        quantile = interval_halfwidth(calibration, outputs.interval)
        write_interval(write, sampled.estimate, scale, quantile, outputs.interval,
                       (outputs.scale, outputs.lower, outputs.upper))
        write_json({"interval": outputs.interval, "halfwidth": quantile, "model": stages[-1][0],
                    "meaning": describe(calibration, outputs.interval), "calibration": calibration},
                   outputs.scale_sidecar)
        log.info("%s", describe(calibration, outputs.interval))
    else:
        log.info("%s: not calibrated; only the raw sample sd is written", stages[-1][0] if len(stages) == 1
                 else "a cascade")
    log.info("%s -> %s: %s voxels of %s mm", lr_path, outputs.estimate, estimate.shape,
             voxel_sizes(scan_affine).round(3).tolist())


def _canonical_volume(path: str) -> np.ndarray:
    return to_canonical(load_volume(path)).get_fdata(dtype=np.float32)


def calibrate_model(weights_path: str, validation: dict[str, dict[str, str]], settings: dict, seed: int,
                    model_path: str, figure_path: str, reliability_path: str) -> dict | None:
    """The calibrate stage: sample each validation subject's LR with the model's own sampler, fit the calibration
    (:mod:`mrisr.inference.calibration`) on their brains, and write the model file with it inside.

    ``validation`` maps each validation subject to its ``hr``, ``lr`` and
    ``mask`` files. Also draws the first subject's slices (cubic, estimate,
    HR, error, sample sd, calibrated scale) and the reliability of the
    intervals on the validation brains, calibrated beside the raw sd's
    Gaussian intervals. A model that produces an intermediate grid (a
    cascade's first stage) has no HR to be checked against: it is written
    without calibration.
    """
    spec, network = load_model(weights_path, resolve_device(settings["device"]))
    features, errors, first = [], [], None
    for subject, files in validation.items():
        hr, lr, mask = (_canonical_volume(files[k]) for k in ("hr", "lr", "mask"))
        shape = hr.shape if all(f == 1 for f in spec.output_factor) else hr_grid_for(np.eye(4), lr.shape,
                                                                                        spec.step_factor)[0]
        lr = np.clip(lr, 0, 1)
        cubic = condition_image(lr, shape)
        sampled = super_resolve(lr, shape, spec, network, settings, seed)
        first = first or (subject, cubic, sampled, hr, mask > 0.5)
        if shape != hr.shape:
            continue
        inside = mask > 0.5
        maps = feature_maps(cubic, sampled.estimate, sampled.sd, sampled.view_sd)
        features.append({name: value[inside] for name, value in maps.items()})
        errors.append(sampled.estimate[inside] - hr[inside])  # as the evaluation measures it
    subject, cubic, sampled, hr, inside = first
    if not errors:
        save_calibrated(weights_path, model_path, settings, None)
        log.info("%s: produces an intermediate grid, not the HR one: written without calibration", weights_path)
        comparison_panel({"cubic spline": cubic, "model": sampled.estimate}, f"validation subject {subject}",
                         figure_path, maps=[{"sample sd": sampled.sd}])
        reliability_figure({}, "no calibration (intermediate grid)", reliability_path)
        return None
    calibration = fit_calibration({name: np.concatenate([f[name] for f in features]) for name in features[0]},
                                  np.concatenate(errors), seed)
    calibration["subjects"] = list(validation)
    save_calibrated(weights_path, model_path, settings, calibration)
    scale = error_scale(calibration, cubic, sampled.estimate, sampled.sd, sampled.view_sd)
    error = sampled.estimate - hr
    curves = {"calibrated scale": pd.DataFrame(reliability(error[inside], scale[inside], calibration)),
              "raw sd, Gaussian": pd.DataFrame(gaussian_reliability(error[inside], sampled.sd[inside]))}
    for name, curve in curves.items():
        at_90 = curve.loc[np.isclose(curve["level"], 0.9), "coverage"].item()
        log.info("validation subject %s, %s: 90 %% interval covers %.1f %% of the brain", subject, name, 100 * at_90)
    reliability_figure(curves, f"validation subject {subject} (calibration voxels)", reliability_path)
    comparison_panel({"cubic spline": cubic, "model": sampled.estimate, "HR": np.clip(hr, 0, 1)},
                     f"validation subject {subject}", figure_path,
                     maps=[{"|model − HR|": np.abs(error), "calibrated error scale": scale},
                           {"sample sd": sampled.sd}])
    return calibration
