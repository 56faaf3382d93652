"""Figures every stage draws: mid-slices, slice panels, training curves, saved atomically.

Stage-specific figures build on these: the QC image (:mod:`mrisr.preprocess.qc`), the report's strip
plots and calibration curves (:mod:`mrisr.evaluation.figures`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .io import atomic_path  # noqa: E402


def save_figure(figure: plt.Figure, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, bbox_inches="tight", facecolor="white")
    plt.close(figure)
    return Path(path)


def mid_slices(volume: np.ndarray, centre: Sequence[int] | None = None) -> list[np.ndarray]:
    """Sagittal, coronal and axial slices through ``centre`` (default: the middle), oriented for display."""
    centre = centre or [n // 2 for n in volume.shape]
    return [
        np.rot90(volume[centre[0], :, :]),
        np.rot90(volume[:, centre[1], :]),
        np.rot90(volume[:, :, centre[2]]),
    ]


PLANES = ("sagittal", "coronal", "axial")  # the planes of mid_slices, by the voxel axis normal to each


def planes_across(factor: float | Sequence[float]) -> list[int]:
    """The planes of :func:`mid_slices` that cut across an anisotropic ``factor``'s thick axes, where their
    thickness shows (a plane normal to the thick axis is in-plane, sharp in every method); all three when the
    factor is the same along every axis."""
    factor = np.broadcast_to(np.asarray(factor, float), (3,))
    return [plane for plane in range(3) if factor[plane] < factor.max()] or [0, 1, 2]


def comparison_panel(
    images: dict[str, np.ndarray], title: str, path: str, maps: Sequence[dict[str, np.ndarray]] = (),
    planes: Sequence[int] = (0, 1, 2),
) -> Path:
    """Mid-slices (rows: the ``planes`` of :func:`mid_slices`, by default sagittal, coronal, axial), one column
    per image in [0, 1], then one per map.

    Each dict of ``maps`` (errors, sample sd) shares one colour scale, so its
    columns compare directly.
    """
    columns = [(name, volume, "gray", 1.0) for name, volume in images.items()]
    for group in maps:
        upper = max([float(np.percentile(volume, 99.5)) for volume in group.values()] + [1e-6])
        columns += [(name, volume, "magma", upper) for name, volume in group.items()]
    figure, axes = plt.subplots(len(planes), len(columns), figsize=(2.2 * len(columns), 2.3 * len(planes)),
                                squeeze=False)
    for column, (name, volume, colormap, upper) in enumerate(columns):
        slices = mid_slices(volume)
        for row, plane in enumerate(planes):
            axes[row, column].imshow(slices[plane], cmap=colormap, vmin=0, vmax=upper, interpolation="nearest")
            axes[row, column].axis("off")
        axes[0, column].set_title(name, fontsize=9)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path)


def training_curves(log: pd.DataFrame, path: str) -> Path:
    """Training loss per logged step and validation loss where measured (log scale)."""
    figure, ax = plt.subplots(figsize=(6, 3.4))
    ax.plot(log["step"], log["loss"], label="training loss")
    validation = log.dropna(subset=["val_loss"])
    if len(validation):
        ax.plot(validation["step"], validation["val_loss"], "o-", label="validation loss (EMA weights)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(figure, path)


def against_identity(lines: dict[str, tuple], upper: float, identity_label: str, axis_labels: tuple[str, str],
                     title: str, path: str) -> Path:
    """One line per entry of ``lines`` (x values, y values) beside the dashed identity from 0 to ``upper``: a line
    on the identity holds what it claims."""
    figure, ax = plt.subplots(figsize=(4.2, 3.6))
    ax.plot([0, upper], [0, upper], color="grey", linestyle="--", linewidth=1, label=identity_label)
    for name, (x, y) in lines.items():
        ax.plot(x, y, "o-", markersize=3, label=name)
    ax.set_xlim(0, upper)
    ax.set_ylim(0, upper)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(figure, path)


def reliability_figure(curves: dict[str, pd.DataFrame], title: str, path: str) -> Path:
    """Empirical against nominal coverage of intervals, one line per curve (columns ``level`` and ``coverage``)."""
    return against_identity({name: (curve["level"], curve["coverage"]) for name, curve in curves.items()}, 1.0,
                            "as claimed", ("nominal coverage of the interval", "empirical coverage (brain voxels)"),
                            title, path)
