"""The report's figures: a strip plot per metric and the calibration curves of the uncertainty maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..figures import against_identity, plt, save_figure


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
    return save_figure(figure, path)


def calibration_figure(tables: dict[str, pd.DataFrame], title: str, path: str) -> Path:
    """RMSE of the estimate against the mean predicted sd per sd bin, one line per model, with the identity."""
    upper = 1.05 * max(max(table["mean_sd"].max(), table["rmse"].max()) for table in tables.values())
    return against_identity({model: (table["mean_sd"], table["rmse"]) for model, table in tables.items()}, upper,
                            "calibrated", ("mean sample sd in bin", "RMSE of the estimate in bin"), title, path)
