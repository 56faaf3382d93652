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
    images: dict[str, np.ndarray], title: str, path: str, maps: Sequence[dict[str, np.ndarray]] = (),
) -> Path:
    """Mid-slices (rows: sagittal, coronal, axial), one column per image in [0, 1], then one per map.

    Each dict of ``maps`` (errors, sample sd) shares one colour scale, so its
    columns compare directly.
    """
    columns = [(name, volume, "gray", 1.0) for name, volume in images.items()]
    for group in maps:
        upper = max([float(np.percentile(volume, 99.5)) for volume in group.values()] + [1e-6])
        columns += [(name, volume, "magma", upper) for name, volume in group.items()]
    figure, axes = plt.subplots(3, len(columns), figsize=(2.2 * len(columns), 6.9), squeeze=False)
    for column, (name, volume, colormap, upper) in enumerate(columns):
        for row, image in enumerate(mid_slices(volume)):
            axes[row, column].imshow(image, cmap=colormap, vmin=0, vmax=upper, interpolation="nearest")
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


def metric_strip(table: pd.DataFrame, metric: str, label: str, path: str) -> Path:
    """One dot per test subject, method and factor, so an outlier stands out."""
    figure, ax = plt.subplots(figsize=(max(6, 0.7 * table.groupby(["factor", "method"]).ngroups), 3))
    groups = list(table.groupby(["factor", "method"], sort=False))
    for position, ((factor, method), rows) in enumerate(groups):
        ax.scatter(np.full(len(rows), position), rows[metric], s=25,
                   color="grey" if rows["kind"].iloc[0] == "baseline" else "C0")
    ax.set_xticks(range(len(groups)), [f"{method}\n×{factor}" for (factor, method), _ in groups], rotation=30,
                  fontsize=8)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3, axis="y")
    return _save(figure, path)


def calibration_figure(tables: dict[str, pd.DataFrame], title: str, path: str) -> Path:
    """RMSE of the estimate against the mean predicted sd per sd bin, one line per model, with the identity."""
    figure, ax = plt.subplots(figsize=(4.2, 3.6))
    upper = max(max(table["mean_sd"].max(), table["rmse"].max()) for table in tables.values())
    ax.plot([0, upper], [0, upper], color="grey", linestyle="--", linewidth=1, label="calibrated")
    for model, table in tables.items():
        ax.plot(table["mean_sd"], table["rmse"], "o-", markersize=3, label=model)
    ax.set_xlabel("mean sample sd in bin")
    ax.set_ylabel("RMSE of the estimate in bin")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(figure, path)
