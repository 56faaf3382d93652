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

import numpy as np

from ..figures import comparison_panel
from ..grids import hr_grid_for, voxel_sizes
from ..io import load_volume, save_volume
from ..model.modelfile import condition_image, load_model
from ..model.networks import resolve_device
from ..preprocess.orientation import canonical_grid, to_canonical, to_scan_order
from .sampling import sample_volume, super_resolve

log = logging.getLogger(__name__)


def super_resolve_pair(lr_path: str, grid_path: str, stages: Sequence[tuple[str, dict]], sr_path: str,
                       sd_path: str, seed: int) -> None:
    """The super_resolve stage: a pair's LR scan through one model or a cascade of them onto the pair's HR grid.

    ``stages`` are ``(model file, sampler settings)`` applied in turn (a
    cascade passes each stage's estimate to the next); the final grid is the
    one the pair's ``pair.json`` records. Sampling runs in the RAS voxel
    order the models learnt in; the outputs are written in the pair's own.
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
        volume, spread = super_resolve(volume, shape, spec, network, settings, seed)
    estimate, scan_affine = to_scan_order(volume, affine, lr_image.affine)
    save_volume(estimate, scan_affine, sr_path, description="mrisr SR estimate")
    save_volume(to_scan_order(spread, affine, lr_image.affine)[0], scan_affine, sd_path,
                description="mrisr SR sample sd")
    log.info("%s -> %s: %s voxels of %s mm", lr_path, sr_path, estimate.shape,
             voxel_sizes(scan_affine).round(3).tolist())


def validation_figure(model_path: str, hr_path: str, lr_path: str, settings: dict, seed: int, path: str) -> None:
    """The train stage's figure: the model's own sampler on a validation subject's central region, beside
    cubic and HR (a check that the training worked, drawn from the model file itself)."""
    spec, network = load_model(model_path, resolve_device(settings["device"]))
    hr = load_volume(hr_path).get_fdata(dtype=np.float32)
    condition = condition_image(load_volume(lr_path).get_fdata(dtype=np.float32), hr.shape)
    size = np.minimum(np.asarray(spec.patch_size).clip(min=16) * 2, hr.shape)
    corner = (np.asarray(hr.shape) - size) // 2
    window = tuple(slice(int(c), int(c + n)) for c, n in zip(corner, size))
    target, condition = np.clip(hr[window], 0, 1), condition[window]
    estimate, spread = sample_volume(condition, network, spec, {**settings, "n_samples": min(settings["n_samples"], 2)},
                                     seed)
    comparison_panel({"cubic spline": condition, "model": estimate, "HR": target},
                     f"validation subject {Path(hr_path).parent.name}, central region", path,
                     maps=[{"|model − HR|": np.abs(estimate - target)}, {"sample sd": spread}])
