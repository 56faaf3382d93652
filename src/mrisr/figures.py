"""Figures a reviewer looks at: slice panels, training curves (the preprocessing QC image is in mrisr.qc)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .io import atomic_path  # noqa: E402


def _save(figure: plt.Figure, path: str | Path) -> Path:
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


def comparison_panel(
    images: dict[str, np.ndarray], title: str, path: str, error_of: str | None = None,
    reference: str = "HR", uncertainty: np.ndarray | None = None,
) -> Path:
    """Rows of mid-slices (sagittal, coronal, axial): one column per image, plus |error| and uncertainty."""
    columns = dict(images)
    if error_of is not None:
        columns[f"|{error_of} − {reference}|"] = np.abs(images[error_of] - images[reference])
    if uncertainty is not None:
        columns["uncertainty (sd)"] = uncertainty
    figure, axes = plt.subplots(3, len(columns), figsize=(2.2 * len(columns), 6.9), squeeze=False)
    for column, (name, volume) in enumerate(columns.items()):
        is_map = name.startswith("|") or name.startswith("uncertainty")
        upper = max(float(np.percentile(volume, 99.5)), 1e-6) if is_map else 1.0
        for row, image in enumerate(mid_slices(volume)):
            axes[row, column].imshow(image, cmap="magma" if is_map else "gray", vmin=0, vmax=upper,
                                     interpolation="nearest")
            axes[row, column].axis("off")
        axes[0, column].set_title(name, fontsize=9)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _save(figure, path)


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
    return _save(figure, path)


def metric_strip(summary: pd.DataFrame, metric: str, path: str) -> Path:
    """One dot per test subject and method, so an outlier stands out."""
    figure, ax = plt.subplots(figsize=(6, 3))
    methods = list(dict.fromkeys(summary["method"]))
    for position, method in enumerate(methods):
        values = summary.loc[summary["method"] == method, metric]
        ax.scatter(np.full(len(values), position), values, s=25)
    ax.set_xticks(range(len(methods)), methods, rotation=20)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3, axis="y")
    return _save(figure, path)
