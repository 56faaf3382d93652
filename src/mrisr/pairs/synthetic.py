"""Synthetic subjects: smooth random volumes with their LR scan and a mask, written as the pairs stage writes them.

For the tests and the speed benchmark, which need training pairs of a known
size in seconds; never part of a workflow run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from ..io import save_volume
from .degrade import degrade


def synthetic_subjects(folder: str | Path, degradation: dict, count: int = 2, shape=(24, 24, 24),
                       brain_shaped: bool = False) -> dict[str, dict[str, str]]:
    """``count`` subjects ``s0``, ``s1``, ... as ID -> ``hr``/``lr``/``mask`` paths (LR at factor 2).

    The HR is smoothed noise in [0, 1]; the mask is where it exceeds 0.3, or
    with ``brain_shaped`` an ellipsoid filling most of the grid (outside it the HR is zero).
    """
    folder = Path(folder)
    grid = np.indices(shape, sparse=True)
    ellipsoid = sum(((axis - n / 2) / (0.4 * n)) ** 2 for axis, n in zip(grid, shape)) < 1
    subjects = {}
    for index in range(count):
        rng = np.random.default_rng(index)
        hr = np.clip(ndimage.gaussian_filter(rng.random(shape), 1.2) * 3 - 1, 0, 1).astype(np.float32)
        if brain_shaped:
            hr *= ellipsoid
        mask = ellipsoid if brain_shaped else hr > 0.3
        paths = {kind: str(folder / f"s{index}_{kind}.nii.gz") for kind in ("hr", "lr", "mask")}
        save_volume(hr, np.eye(4), paths["hr"])
        lr = degrade(hr, 2, degradation, np.random.default_rng([index, 1]))
        save_volume(lr, np.diag([2, 2, 2, 1.0]), paths["lr"])
        save_volume(mask.astype(np.float32), np.eye(4), paths["mask"])
        subjects[f"s{index}"] = paths
    return subjects
