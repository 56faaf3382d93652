"""Automatic quality control of preprocessing: figures a reviewer trusts, thresholds that stop a bad subject.

Three figures, all measured after registration and masking:

- ``dice``: overlap of the subject's brain mask, carried into template space,
  with the template's brain mask. A mask that took in the neck or the face,
  or a brain registered to the wrong place, overlaps the template brain badly.
- ``brain_ml``: volume of the subject's brain mask on its own grid, in ml.
  A whole head, a face or a half brain is the wrong size for an adult brain.
- ``correlation``: Pearson correlation of the registered scan with the
  template inside the template's brain. A misregistration, or a scan that is
  not a T1w brain, correlates badly.

A subject outside any threshold (``preprocess.qc`` in the config) fails its
preprocess job with one line naming the figure and the QC image; the QC
image and a one-row CSV are written first, under ``logs/``, so that they
survive the failure (Snakemake removes a failed job's outputs, not its logs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..io import MrisrError, atomic_path

FIGURES = {
    "dice": "Dice of the brain mask with the template's brain mask",
    "brain_ml": "brain volume (ml)",
    "correlation": "correlation with the template in the brain",
}
PASSED, FAILED = "pass", "FAIL"
# The columns of a subject's QC record (``qc.csv``), then one ``seconds_<step>`` column per preprocessing step.
RECORD_COLUMNS = ("subject", "status", "orientation", "skull_strip", "skull_strip_reason", *FIGURES, "failed",
                  "qc_image")


def dice(first: np.ndarray, second: np.ndarray) -> float:
    """Dice overlap of two boolean masks: 1 when they are identical (two empty masks included), 0 when disjoint."""
    total = int(first.sum()) + int(second.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(first, second).sum()) / total


def correlation_in(first: np.ndarray, second: np.ndarray, mask: np.ndarray) -> float:
    """Pearson correlation of two volumes over the voxels of ``mask``."""
    a, b = first[mask].astype(np.float64), second[mask].astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def measure(subject_mask_in_template: np.ndarray, template_mask: np.ndarray, brain_ml: float,
            registered: np.ndarray, template: np.ndarray) -> dict[str, float]:
    """The QC figures of one subject (see the module docstring)."""
    return {"dice": dice(subject_mask_in_template, template_mask), "brain_ml": float(brain_ml),
            "correlation": correlation_in(registered, template, template_mask)}


def failures(figures: dict[str, float], thresholds: dict) -> list[str]:
    """One phrase per figure outside its threshold (``preprocess.qc``), e.g. ``dice 0.61 < 0.85``."""
    problems = []
    if figures["dice"] < thresholds["min_dice"]:
        problems.append(f"dice {figures['dice']:.3f} < {thresholds['min_dice']}")
    low, high = thresholds["brain_ml"]
    if not low <= figures["brain_ml"] <= high:
        problems.append(f"brain_ml {figures['brain_ml']:.0f} outside [{low}, {high}]")
    if figures["correlation"] < thresholds["min_correlation"]:
        problems.append(f"correlation {figures['correlation']:.3f} < {thresholds['min_correlation']}")
    return problems


def check(subject: str, figures: dict[str, float], thresholds: dict, qc_image: str) -> None:
    """Raise :class:`MrisrError` with one line when a figure is outside its threshold."""
    problems = failures(figures, thresholds)
    if problems:
        raise MrisrError(f"{subject}: preprocessing failed QC: {'; '.join(problems)} (thresholds in preprocess.qc); "
                         f"look at {qc_image}")


def write_row(row: dict, path: str) -> None:
    """The subject's QC record: one CSV row."""
    with atomic_path(path) as tmp:
        pd.DataFrame([row]).to_csv(tmp, index=False, float_format="%.4f")


def qc_figure(head: np.ndarray, head_mask: np.ndarray, template_mask: np.ndarray, brain: np.ndarray,
              brain_mask: np.ndarray, template_on_grid: np.ndarray, title: str, path: str) -> Path:
    """The QC image: top, the registered head with the subject's brain mask (red) and the template's (cyan);
    bottom, the preprocessed brain with the template's edges (cyan).

    The top row shows what the figures measure: a mask on the neck or a brain
    off the template stands out at once.
    """
    # Imported here: the workflow imports this module at start-up, where plotting is not needed.
    from ..figures import mid_slices, plt, save_figure

    figure, axes = plt.subplots(2, 3, figsize=(10, 7.2))
    top = max(float(np.percentile(head[template_mask], 99)), 1e-6) if template_mask.any() else 1.0
    rows = [(head / top, head_mask, template_mask, True), (brain, brain_mask, template_on_grid, False)]
    for row, (image, mask, reference, is_mask) in zip(axes, rows):
        for ax, picture, outline, other in zip(row, mid_slices(image), mid_slices(mask.astype(float)),
                                               mid_slices(reference.astype(float))):
            ax.imshow(picture, cmap="gray", vmin=0, vmax=1)
            ax.contour(outline, levels=[0.5], colors="red", linewidths=0.8)
            if is_mask:
                ax.contour(other, levels=[0.5], colors="cyan", linewidths=0.6)
            else:
                gradient = np.hypot(*np.gradient(other))
                if gradient.max() > 0:
                    ax.contour(gradient, levels=[0.25 * gradient.max()], colors="cyan", linewidths=0.4, alpha=0.7)
            ax.axis("off")
    figure.suptitle(f"{title}\ntop: registered scan, its brain mask (red), the template's brain (cyan); "
                    "bottom: preprocessed brain, mask (red), template edges (cyan)", fontsize=9)
    return save_figure(figure, path)


def title_line(subject: str, figures: dict[str, float], problems: Sequence[str]) -> str:
    """The QC image's title: the figures, and what failed."""
    status = f"FAILED: {'; '.join(problems)}" if problems else "passed"
    return (f"{subject}: Dice {figures['dice']:.3f}, brain {figures['brain_ml']:.0f} ml, "
            f"correlation {figures['correlation']:.3f}; QC {status}")


def table(qc_csvs: list[str], excluded_csvs: dict[str, str], split: pd.DataFrame, thresholds: dict) -> pd.DataFrame:
    """The report's QC table: one row per subject with its figures and QC status, outliers marked.

    Subjects in ``preprocess.exclude`` are listed with their last QC record
    (``excluded_csvs``: subject -> the record under ``logs/``), if any. A
    figure outside its threshold is marked ``!``; one beyond 1.5 interquartile
    ranges of the quartiles of the subjects that go on (the rule MRIQC's group
    reports use; at least five subjects) is marked ``*``.
    """
    records = [pd.read_csv(path) for path in qc_csvs]
    for subject, path in excluded_csvs.items():
        record = pd.read_csv(path) if Path(path).is_file() else pd.DataFrame([{"subject": subject, "status": "none"}])
        record["status"] = "excluded (QC " + record["status"].astype(str) + ")"
        records.append(record)
    qc = pd.concat(records, ignore_index=True).reindex(columns=[*RECORD_COLUMNS])
    roles = dict(zip(split["subject"], split["role"]))
    shown = pd.DataFrame({"subject": qc["subject"], "role": [roles.get(s, "–") for s in qc["subject"]],
                          "stored as": qc["orientation"].fillna("–"), "skull strip": qc["skull_strip"].fillna("–")})
    low, high = thresholds["brain_ml"]
    outside = {"dice": lambda v: v < thresholds["min_dice"], "brain_ml": lambda v: (v < low) | (v > high),
               "correlation": lambda v: v < thresholds["min_correlation"]}
    cohort = np.arange(len(qc)) < len(qc_csvs)  # outliers among the subjects that go on, not the excluded ones
    for figure, digits in (("dice", 3), ("brain_ml", 0), ("correlation", 3)):
        values = pd.to_numeric(qc[figure], errors="coerce")
        odd = np.zeros(len(values), dtype=bool)
        odd[cohort] = _outliers(values[cohort])
        shown[FIGURES[figure]] = [("–" if np.isnan(value) else f"{value:.{digits}f}") + (" !" if bad else "")
                                  + (" *" if strange else "")
                                  for value, bad, strange in zip(values, outside[figure](values), odd)]
    shown["QC"] = qc["status"].fillna("–")
    return shown


def _outliers(values: pd.Series) -> np.ndarray:
    """Tukey's fences: beyond 1.5 IQR of the quartiles (needs at least five values)."""
    finite = values.dropna()
    if len(finite) < 5:
        return np.zeros(len(values), dtype=bool)
    low, high = np.percentile(finite, [25, 75])
    spread = 1.5 * (high - low)
    return ((values < low - spread) | (values > high + spread)).to_numpy()
