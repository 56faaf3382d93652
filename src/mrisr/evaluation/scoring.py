"""The evaluate stage: every model and baseline scored on the same voxels of each held-out subject.

Per method: PSNR, SSIM and high-frequency error in the brain and overall,
LR-consistency (does the estimate degrade back to the LR it came from?),
tissue Dice (does it segment like the HR?), and for models with several
samples how well their spread predicts their error (correlation and a
calibration table). Baselines: nearest, trilinear and cubic interpolation,
and cubic followed by iterative back-projection with the pairs' own
degradation (a classical method that knows the forward operator the models
assume, ``pairs.degradation``, whichever degradation made the LR scored).
Every row names the degradation its LR was made by.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from ..figures import comparison_panel
from ..grids import factor_label, upsample
from ..io import MrisrError, atomic_path, load_volume
from ..pairs.degrade import back_project, lr_consistency
from .metrics import evaluate_volume
from .tissue import tissue_dice

log = logging.getLogger(__name__)

BASELINE_KIND = "baseline"
METRICS = ["psnr_brain", "ssim_brain", "psnr_whole", "ssim_whole", "hf_error_brain", "lr_psnr"]
CALIBRATION_BINS = 10


def baseline_estimate(name: str, lr: np.ndarray, hr_shape, factor, assumed: dict, iterations: int) -> np.ndarray:
    """A classical estimate of the HR image: ``nearest``, ``trilinear``, ``cubic`` or ``back_projection`` (with the
    ``assumed`` degradation's operator)."""
    if name == "back_projection":
        return back_project(upsample(lr, hr_shape, "cubic"), lr, factor, assumed, iterations)
    return upsample(lr, hr_shape, name)


def read_reference(hr_path: str, lr_path: str, mask_path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HR, LR and brain mask of a test subject."""
    hr = load_volume(hr_path).get_fdata(dtype=np.float32)
    lr = load_volume(lr_path).get_fdata(dtype=np.float32)
    mask = load_volume(mask_path).get_fdata(dtype=np.float32) > 0.5
    if mask.shape != hr.shape:
        raise MrisrError(f"{mask_path}: shape {mask.shape} does not match the HR scan's {hr.shape}")
    return hr, lr, mask


def score(hr: np.ndarray, lr: np.ndarray, mask: np.ndarray, estimate: np.ndarray, factor, degradation: dict,
          tissue_classes: int, spread: np.ndarray | None = None) -> dict[str, float]:
    """Every metric of one estimate (clipped to [0, 1], as every method is); LR-consistency through the operator of
    ``degradation``, the one that made ``lr``."""
    estimate = np.clip(estimate, 0, 1)
    row = {**evaluate_volume(hr, estimate, mask),
           "lr_psnr": lr_consistency(estimate, lr, factor, degradation),
           **tissue_dice(hr, estimate, mask, tissue_classes)}
    row["uncertainty_error_corr"] = np.nan
    if spread is not None and spread[mask].std() > 0:
        row["uncertainty_error_corr"] = float(np.corrcoef(spread[mask], np.abs(estimate - hr)[mask])[0, 1])
    return row


def calibration_table(spread: np.ndarray, error: np.ndarray, bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Voxels in equal-count bins of predicted sd: mean sd against the RMSE of the estimate in each bin.

    A calibrated uncertainty map puts every bin on the identity line.
    """
    order = np.argsort(spread, kind="stable")
    groups = np.array_split(order, bins)
    return pd.DataFrame({
        "mean_sd": [float(spread[g].mean()) for g in groups],
        "rmse": [float(np.sqrt(np.mean(error[g].astype(np.float64) ** 2))) for g in groups],
        "voxels": [len(g) for g in groups],
    })


def _write_table(table: pd.DataFrame, path: str) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def evaluate_model(
    subject: str, model: str, kind: str, factor, hr_path: str, lr_path: str, mask_path: str, sr_path: str,
    sd_path: str, degradation_name: str, degradation: dict, tissue_classes: int, metrics_path: str,
    calibration_path: str,
) -> pd.DataFrame:
    """Metrics of one model's estimate of one subject from the LR that ``degradation`` made, and the calibration
    table of its sample sd."""
    hr, lr, mask = read_reference(hr_path, lr_path, mask_path)
    estimate = load_volume(sr_path).get_fdata(dtype=np.float32)
    spread = load_volume(sd_path).get_fdata(dtype=np.float32)
    if estimate.shape != hr.shape:
        raise MrisrError(f"{sr_path}: shape {estimate.shape} does not match the HR reference {hr.shape}")
    row = score(hr, lr, mask, estimate, factor, degradation, tissue_classes, spread)
    table = pd.DataFrame([{"subject": subject, "method": model, "kind": kind, "factor": factor_label(factor),
                           "degradation": degradation_name, **row}])
    _write_table(table, metrics_path)
    _write_table(calibration_table(spread[mask], np.clip(estimate, 0, 1)[mask] - hr[mask]), calibration_path)
    log.info("%s, %s, %s: PSNR in brain %.2f dB, LR-consistency %.1f dB", subject, degradation_name, model,
             row["psnr_brain"], row["lr_psnr"])
    return table


def evaluate_baselines(
    subject: str, factor, hr_path: str, lr_path: str, mask_path: str, baselines: list[str], degradation_name: str,
    degradation: dict, assumed: dict, iterations: int, tissue_classes: int, metrics_path: str,
) -> pd.DataFrame:
    """Metrics of the classical baselines on one subject at one factor, from the LR that ``degradation`` made;
    back-projection assumes the operator of ``assumed`` (the models' own)."""
    hr, lr, mask = read_reference(hr_path, lr_path, mask_path)
    rows = []
    for name in baselines:
        estimate = baseline_estimate(name, lr, hr.shape, factor, assumed, iterations)
        rows.append({"subject": subject, "method": name, "kind": BASELINE_KIND, "factor": factor_label(factor),
                     "degradation": degradation_name, **score(hr, lr, mask, estimate, factor, degradation,
                                                              tissue_classes)})
    table = pd.DataFrame(rows)
    _write_table(table, metrics_path)
    log.info("%s x%s, %s: PSNR in brain %s", subject, factor_label(factor), degradation_name,
             ", ".join(f"{m} {v:.2f}" for m, v in zip(table["method"], table["psnr_brain"])))
    return table


def draw_panel(
    subject: str, factor, hr_path: str, lr_path: str, mask_path: str, estimates: dict[str, str],
    spreads: dict[str, str], degradation: dict, iterations: int, path: str,
) -> None:
    """Slices of the LR, cubic, back-projection and every model's estimate beside the HR, and their errors."""
    hr, lr, _ = read_reference(hr_path, lr_path, mask_path)
    images = {"LR (nearest)": upsample(lr, hr.shape, "nearest"),
              **{name: baseline_estimate(name, lr, hr.shape, factor, degradation, iterations)
                 for name in ("cubic", "back_projection")},
              **{model: load_volume(sr).get_fdata(dtype=np.float32) for model, sr in estimates.items()}}
    images = {name: np.clip(image, 0, 1) for name, image in images.items()}
    errors = {f"|{name} − HR|": np.abs(image - hr) for name, image in images.items() if name != "LR (nearest)"}
    spread = {f"sd {model}": load_volume(sd).get_fdata(dtype=np.float32) for model, sd in spreads.items()}
    comparison_panel({**images, "HR": hr}, f"test subject {subject}, factor {factor_label(factor)}", path,
                     maps=[errors, spread])


def summarize(metric_paths: list[str], summary_path: str) -> pd.DataFrame:
    """Concatenate per-subject tables into one long table (one row per subject, method and factor)."""
    table = pd.concat([pd.read_csv(path, dtype={"factor": str}) for path in metric_paths], ignore_index=True)
    _write_table(table, summary_path)
    log.info("%d rows from %d subject(s) -> %s", len(table), table["subject"].nunique(), summary_path)
    return table


def method_summary(table: pd.DataFrame, references: tuple[str, ...] = ("cubic", "back_projection")) -> pd.DataFrame:
    """Mean and sd over subjects per degradation, factor and method, and the mean paired difference to each
    reference baseline of the same degradation and factor (``NaN`` where that baseline was not run).

    Tables without a ``degradation`` column (written before it existed) are summarised per factor and method.
    """
    metrics = [column for column in METRICS + [c for c in table if c.startswith("dice_")]
               + ["uncertainty_error_corr"] if column in table]
    levels = [column for column in ("degradation", "factor") if column in table]
    keys = levels + ["method"]
    grouped = table.groupby(keys, sort=False)
    summary = grouped[metrics].mean().add_suffix("_mean").join(grouped[metrics].std(ddof=0).add_suffix("_sd"))
    summary["kind"] = grouped["kind"].first()
    summary["n_subjects"] = grouped["subject"].nunique()
    for reference in references:
        for metric in ("psnr_brain", "ssim_brain"):
            by_subject = table.pivot_table(index=levels + ["subject"], columns="method", values=metric)
            if reference not in by_subject:
                summary[f"{metric}_vs_{reference}"] = np.nan
                continue
            difference = by_subject.sub(by_subject[reference], axis=0).groupby(level=levels).mean()
            summary[f"{metric}_vs_{reference}"] = [
                difference.loc[key[:-1] if len(levels) > 1 else key[0], key[-1]]
                if key[-1] in difference else np.nan for key in summary.index]
    return summary.reset_index()
