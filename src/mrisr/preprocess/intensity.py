"""Intensity normalisation of T1w brains: the white-matter peak scaled to one level for every subject.

Kept apart from :mod:`mrisr.preprocess.pipeline` (which imports ANTs) because the
command line applies the same scaling to a user's scan.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..io import MrisrError

WHITE_MATTER_LEVEL = 0.75


def white_matter_peak(values: np.ndarray) -> float:
    """The white-matter intensity of a T1w brain: the histogram mode of the brighter half of its voxels.

    A tissue reference rather than a high percentile, so that bright vessels
    or fat in one scan do not darken its tissue relative to another's.
    """
    values = values[values > 0]
    if values.size == 0:
        raise MrisrError("the brain mask covers no positive intensities: the mask missed the brain, or the image "
                         "is empty")
    bright = values[values >= np.median(values)]
    counts, edges = np.histogram(bright, bins=100, range=(bright.min(), np.percentile(bright, 99.9)))
    counts = ndimage.gaussian_filter1d(counts.astype(float), 2)
    peak = int(np.argmax(counts))
    return float((edges[peak] + edges[peak + 1]) / 2)


def normalise_intensity(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Scale the white-matter peak to 0.75 and clip to [0, 1]; zero outside the brain."""
    scale = WHITE_MATTER_LEVEL / white_matter_peak(volume[mask])
    return np.where(mask, np.clip(volume * scale, 0, 1), 0).astype(np.float32)
