"""Sliding-window inference over large volumes: window layout, Gaussian blending, batching.

A volume is cut into overlapping windows of at most the network's patch
size; each window's prediction is weighted by a Gaussian that favours its
centre and the weighted predictions are blended into one volume, so memory
is bounded by the window while the result has no seams.
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import numpy as np
import torch


def window_grid(size: int, patch: int, overlap: float, multiple: int) -> tuple[int, list[int]]:
    """The window length and start indices along one axis of ``size`` voxels.

    As few windows of at most ``patch`` voxels as cover the axis with at
    least ``overlap`` of each window shared with the next; each window is
    then shrunk to the shortest length (a multiple of ``multiple``) that
    still covers it so, and the windows are spread evenly. Overlap beyond
    what blending needs is work thrown away. Windows one voxel thin (a
    tri-planar model's slabs) take every slice.
    """
    if patch == 1:
        return 1, list(range(size))
    if size <= patch:
        return int(np.ceil(size / multiple) * multiple), [0]
    count = int(np.ceil((size - patch * overlap) / (patch * (1 - overlap))))
    length = min(patch, int(np.ceil(size / (count - (count - 1) * overlap) / multiple) * multiple))
    return length, [int(round(start)) for start in np.linspace(0, size - length, count)]


def gaussian_weights(patch_size: Sequence[int], sigma_scale: float = 0.125) -> torch.Tensor:
    """Importance map that favours patch centres, where the network has the most context."""
    axes = []
    for n in patch_size:
        coords = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        axes.append(torch.exp(-0.5 * (coords / (sigma_scale * n)) ** 2))
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    return (weights / weights.max()).clamp_min(1e-3)


def sliding_window(
    volumes: torch.Tensor,
    patch_size: Sequence[int],
    predict: Callable[[torch.Tensor], torch.Tensor],
    overlap: float,
    batch_size: int,
    multiple: int = 1,
) -> torch.Tensor:
    """Apply ``predict`` to overlapping windows of ``volumes`` (N, C, X, Y, Z) and blend the outputs.

    Windows are at most ``patch_size`` and laid out by :func:`window_grid`
    (sides a multiple of ``multiple``, the network's downsampling).
    ``predict`` maps a batch (B, C, *window) to (B, C_out, *window); each call
    gets ``batch_size`` window positions of all N volumes. Volumes smaller
    than a window are padded (edge values) and cropped back.
    """
    count, spatial = volumes.shape[0], tuple(volumes.shape[2:])
    grids = [window_grid(n, p, overlap, multiple) for n, p in zip(spatial, patch_size)]
    window_size = [length for length, _ in grids]
    padding = [max(0, length - n) for length, n in zip(window_size, spatial)]
    if any(padding):
        volumes = torch.nn.functional.pad(volumes, [side for p in reversed(padding) for side in (0, p)],
                                          mode="replicate")
    padded = tuple(volumes.shape[2:])
    weights = gaussian_weights(window_size).to(volumes.device)
    corners = list(itertools.product(*(starts for _, starts in grids)))
    output = None
    total_weight = torch.zeros(padded, device=volumes.device)
    for first in range(0, len(corners), batch_size):
        windows = [tuple(slice(c, c + p) for c, p in zip(corner, window_size))
                   for corner in corners[first:first + batch_size]]
        batch = torch.cat([volumes[(slice(None), slice(None), *window)] for window in windows])
        predicted = predict(batch).float()
        if output is None:
            output = torch.zeros((count, predicted.shape[1], *padded), device=volumes.device)
        for index, window in enumerate(windows):
            output[(slice(None), slice(None), *window)] += predicted[index * count:(index + 1) * count] * weights
            total_weight[window] += weights
    output = output / total_weight
    return output[(slice(None), slice(None), *(slice(0, n) for n in spatial))]


def evaluated_voxels(shape: Sequence[int], patch_size: Sequence[int], overlap: float, multiple: int) -> int:
    """Voxels one sliding-window pass feeds the network (over the volume's own voxel count: the overlap cost)."""
    grids = [window_grid(n, p, overlap, multiple) for n, p in zip(shape, patch_size)]
    return int(np.prod([length * len(starts) for length, starts in grids]))
