"""Tissue segmentation (CSF, grey and white matter) of a T1w brain, to judge estimates the way researchers use them.

Every volume is segmented the same way: k-means on its own intensities in
the brain mask, started from the same quantiles, so that a difference in
tissue Dice between two estimates comes from the images, not the settings.
"""

from __future__ import annotations

import numpy as np

from ..preprocess.qc import dice

TISSUE_NAMES = {2: ("dark", "bright"), 3: ("csf", "gm", "wm")}


def tissue_names(classes: int) -> tuple[str, ...]:
    """Labels of the classes, darkest first (CSF, GM, WM for three)."""
    return TISSUE_NAMES.get(classes, tuple(f"class{index + 1}" for index in range(classes)))


def segment(volume: np.ndarray, mask: np.ndarray, classes: int, iterations: int = 50) -> np.ndarray:
    """Labels 1..``classes`` (darkest first) in ``mask``, 0 outside: k-means on intensity.

    Centres start at evenly spaced quantiles of the masked intensities and
    move until no voxel changes class (or ``iterations`` rounds).
    """
    values = np.asarray(volume, np.float64)[mask]
    centres = np.quantile(values, (np.arange(classes) + 0.5) / classes)
    labels = np.zeros(values.shape, np.int64)
    for _ in range(iterations):
        boundaries = (centres[1:] + centres[:-1]) / 2
        new_labels = np.searchsorted(boundaries, values)
        if np.array_equal(new_labels, labels) and _ > 0:
            break
        labels = new_labels
        centres = np.array([values[labels == k].mean() if np.any(labels == k) else centres[k]
                            for k in range(classes)])
    segmentation = np.zeros(mask.shape, np.uint8)
    segmentation[mask] = labels + 1
    return segmentation


def tissue_dice(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray, classes: int) -> dict[str, float]:
    """Dice per tissue between the segmentation of ``estimate`` and that of ``reference``."""
    reference_labels, estimate_labels = segment(reference, mask, classes), segment(estimate, mask, classes)
    return {f"dice_{name}": dice(reference_labels == label, estimate_labels == label)
            for label, name in enumerate(tissue_names(classes), start=1)}
