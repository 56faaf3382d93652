"""The evaluate stage: every model and baseline scored on the same voxels of each held-out subject.

Per method: PSNR, SSIM and high-frequency error in the brain and overall,
LR-consistency (does the estimate degrade back to the LR it came from?),
tissue Dice (does it segment like the HR?), and for models with several
samples how well their spread predicts their error (correlation and a
calibration table). For every model the uncertainty table says whether its
intervals hold what they claim (empirical coverage of the calibrated
intervals at 50 / 80 / 90 / 95 %, their mean width) and whether its error
scale ranks voxels by error better than maps that need no sampling
(Spearman ρ with |error|, AUROC for finding the worst 10 % of voxels; the
same for the raw sample sd, the spread of the mirrored views, the gradient
magnitude of the cubic interpolation and |estimate − cubic|). Baselines: nearest, trilinear and cubic interpolation,
and cubic followed by iterative back-projection with the pairs' own
degradation (a classical method that knows the forward operator the models
assume, ``pairs.degradation``, whichever degradation made the LR scored).
Every row names the degradation its LR was made by.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..figures import PLANES, comparison_panel, planes_across
from ..grids import factor_label, upsample
from ..inference.calibration import (cubic_gradient, empirical_coverage, gaussian_reliability, interval_halfwidth,
                                     reliability)
from ..io import MrisrError, atomic_path, load_volume
from ..pairs.degrade import back_project, lr_consistency
from .metrics import evaluate_volume
from .tissue import tissue_dice

log = logging.getLogger(__name__)

BASELINE_KIND = "baseline"
METRICS = ["psnr_brain", "ssim_brain", "psnr_whole", "ssim_whole", "hf_error_brain", "lr_psnr"]
CALIBRATION_BINS = 10
# Interval levels the uncertainty table reports, and the share of voxels that counts as the worst.
COVERAGE_LEVELS = (0.5, 0.8, 0.9, 0.95)
WORST_SHARE = 0.1
# The uncertainty figures copied into each model's metrics row (and so into the summary).
UNCERTAINTY_METRICS = ["coverage_50", "coverage_90", "width_90", "spearman", "auroc_worst10"]


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


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for finding the ``positive`` voxels (Mann-Whitney, ties averaged)."""
    positive = np.asarray(positive, bool)
    count, others = int(positive.sum()), int((~positive).sum())
    if count == 0 or others == 0:
        return float("nan")
    ranks = stats.rankdata(score)
    return float((ranks[positive].sum() - count * (count + 1) / 2) / (count * others))


def ranking(predictor: np.ndarray, error: np.ndarray) -> dict[str, float]:
    """How well a map ranks voxels by |error|: Spearman ρ, and AUROC for the worst ``WORST_SHARE`` of them."""
    error = np.abs(error)
    if np.ptp(predictor) == 0:
        return {"spearman": float("nan"), "auroc_worst10": float("nan")}
    worst = error >= np.quantile(error, 1 - WORST_SHARE)
    return {"spearman": float(stats.spearmanr(predictor, error)[0]), "auroc_worst10": auroc(predictor, worst)}


def interval_figures(error: np.ndarray, halfwidth_at) -> dict[str, float]:
    """Empirical coverage and mean width of the intervals whose half-width at a level ``halfwidth_at(level)`` gives."""
    row = {}
    for level in COVERAGE_LEVELS:
        halfwidth = halfwidth_at(level)
        label = f"{round(100 * level)}"
        row[f"coverage_{label}"] = empirical_coverage(error, halfwidth)
        row[f"width_{label}"] = float(np.mean(2 * halfwidth))
    return row


def uncertainty_tables(hr: np.ndarray, lr: np.ndarray, mask: np.ndarray, estimate: np.ndarray, sd: np.ndarray,
                       view_sd: np.ndarray, scale: np.ndarray | None,
                       calibration: dict | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The uncertainty table (one row per predictor of the error: the calibrated scale, the raw sample sd and the
    proxies; coverage and width where the predictor makes intervals) and the reliability table (nominal and
    empirical coverage at every calibrated level), over the brain voxels."""
    estimate = np.clip(estimate, 0, 1)
    cubic = np.clip(upsample(lr, hr.shape, "cubic"), 0, 1)  # the conditioning image the model saw
    error = (estimate - hr)[mask]
    predictors = {"raw sample sd": sd, "mirrored-view sd": view_sd, "cubic gradient": cubic_gradient(cubic),
                  "|estimate − cubic|": np.abs(estimate - cubic)}
    rows, curves = [], []
    if scale is not None:
        rows.append({"predictor": "calibrated scale", **ranking(scale[mask], error),
                     **interval_figures(error, lambda level: interval_halfwidth(calibration, level) * scale[mask])})
        curves += [{"predictor": "calibrated scale", **row} for row in reliability(error, scale[mask], calibration)]
    for name, predictor in predictors.items():
        row = {"predictor": name, **ranking(predictor[mask], error)}
        if name == "raw sample sd":  # read as a Gaussian standard error, as a reader would
            row.update(interval_figures(error, lambda level: stats.norm.ppf(0.5 + level / 2) * sd[mask]))
        rows.append(row)
    curves += [{"predictor": "raw sample sd, Gaussian", **row} for row in gaussian_reliability(error, sd[mask])]
    return pd.DataFrame(rows), pd.DataFrame(curves)


def _write_table(table: pd.DataFrame, path: str) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def evaluate_model(
    subject: str, model: str, kind: str, factor, hr_path: str, lr_path: str, mask_path: str, sr_path: str,
    sd_path: str, view_sd_path: str, scale_path: str | None, scale_sidecar: str | None, degradation_name: str,
    degradation: dict, tissue_classes: int, metrics_path: str, calibration_path: str, uncertainty_path: str,
    reliability_path: str,
) -> pd.DataFrame:
    """Metrics of one model's estimate of one subject from the LR that ``degradation`` made, the calibration
    table of its sample sd, and its uncertainty and reliability tables (:func:`uncertainty_tables`; the
    calibrated scale at ``scale_path`` with the calibration its JSON sidecar ``scale_sidecar`` records, when given)."""
    hr, lr, mask = read_reference(hr_path, lr_path, mask_path)
    estimate = load_volume(sr_path).get_fdata(dtype=np.float32)
    spread = load_volume(sd_path).get_fdata(dtype=np.float32)
    if estimate.shape != hr.shape:
        raise MrisrError(f"{sr_path}: shape {estimate.shape} does not match the HR reference {hr.shape}")
    row = score(hr, lr, mask, estimate, factor, degradation, tissue_classes, spread)
    scale = load_volume(scale_path).get_fdata(dtype=np.float32) if scale_path else None
    calibration = json.loads(Path(scale_sidecar).read_text())["calibration"] if scale_path else None
    uncertainty, curves = uncertainty_tables(hr, lr, mask, estimate, spread,
                                             load_volume(view_sd_path).get_fdata(dtype=np.float32), scale, calibration)
    calibrated = uncertainty.set_index("predictor").reindex(["calibrated scale"]).iloc[0]
    row.update({name: float(calibrated.get(name, np.nan)) for name in UNCERTAINTY_METRICS})
    for table, path in ((uncertainty, uncertainty_path), (curves, reliability_path)):
        _write_table(table.assign(subject=subject, method=model, degradation=degradation_name), path)
    table = pd.DataFrame([{"subject": subject, "method": model, "kind": kind, "factor": factor_label(factor),
                           "degradation": degradation_name, **row}])
    _write_table(table, metrics_path)
    _write_table(calibration_table(spread[mask], np.clip(estimate, 0, 1)[mask] - hr[mask]), calibration_path)
    log.info("%s, %s, %s: PSNR in brain %.2f dB, LR-consistency %.1f dB; 90 %% interval covers %.1f %%, "
             "Spearman rho %.3f", subject, degradation_name, model, row["psnr_brain"], row["lr_psnr"],
             100 * row["coverage_90"], row["spearman"])
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
    planes = planes_across(factor)  # a thick-slice factor: the planes across the slices, where methods differ
    across = "" if len(planes) == 3 else f": {' and '.join(PLANES[plane] for plane in planes)}, across the slices"
    comparison_panel({**images, "HR": hr}, f"test subject {subject}, factor {factor_label(factor)}{across}", path,
                     maps=[errors, spread], planes=planes)


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
               + ["uncertainty_error_corr"] + UNCERTAINTY_METRICS if column in table]
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
