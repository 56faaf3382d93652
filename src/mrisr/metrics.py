"""Image-quality metrics on the same voxels for every method: PSNR and 3D SSIM, in a mask and overall."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.ndimage import laplace
from skimage.metrics import structural_similarity

from .degrade import INTERPOLATION_ORDERS, upsample
from .figures import comparison_panel
from .io import MrisrError, atomic_path, load_volume


def psnr(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over ``mask`` (all voxels when ``None``)."""
    error = (np.asarray(reference, np.float64) - np.asarray(estimate, np.float64)) ** 2
    mse = float(error[mask].mean() if mask is not None else error.mean())
    return float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse))


log = logging.getLogger(__name__)

SSIM_WINDOW = 7


def ssim_map(reference: np.ndarray, estimate: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """Voxel-wise 3D SSIM (scikit-image defaults: 7x7x7 uniform window).

    Voxels within half a window of the border are set to NaN: scikit-image
    leaves them out of its mean SSIM, and so do the averages here.
    """
    _, full = structural_similarity(
        np.asarray(reference, np.float64), np.asarray(estimate, np.float64),
        data_range=data_range, full=True, win_size=SSIM_WINDOW,
    )
    border = SSIM_WINDOW // 2
    interior = np.full(full.shape, np.nan)
    core = tuple(slice(border, n - border) for n in full.shape)
    interior[core] = full[core]
    return interior


def ssim(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """Mean 3D SSIM over ``mask`` (all voxels when ``None``); equals scikit-image's value without a mask."""
    full = ssim_map(reference, estimate, data_range)
    return float(np.nanmean(full[mask] if mask is not None else full))


def high_frequency_error(reference: np.ndarray, estimate: np.ndarray, mask: np.ndarray | None = None) -> float:
    """RMS difference of Laplacians: how far the fine detail (edges) is from the reference.

    Lower is sharper-and-right; a blurred estimate scores high even when its PSNR is good.
    """
    difference = laplace(np.asarray(reference, np.float64)) - laplace(np.asarray(estimate, np.float64))
    values = difference[mask] if mask is not None else difference
    return float(np.sqrt(np.mean(values**2)))


def evaluate_volume(
    reference: np.ndarray, estimate: np.ndarray, brain_mask: np.ndarray, data_range: float = 1.0
) -> dict[str, float]:
    """PSNR, SSIM and high-frequency error inside the brain mask and over the whole volume."""
    brain_mask = np.asarray(brain_mask, bool)
    full_ssim = ssim_map(reference, estimate, data_range)
    return {
        "psnr_brain": psnr(reference, estimate, brain_mask, data_range),
        "ssim_brain": float(np.nanmean(full_ssim[brain_mask])),
        "psnr_whole": psnr(reference, estimate, None, data_range),
        "ssim_whole": float(np.nanmean(full_ssim)),
        "hf_error_brain": high_frequency_error(reference, estimate, brain_mask),
    }


def evaluate_subject(
    subject: str, hr_path: str, lr_path: str, mask_path: str, sr_path: str, sr_std_path: str,
    metrics_path: str, panel_path: str, model_name: str = "diffusion",
) -> pd.DataFrame:
    """The ``evaluate`` stage: metrics of the interpolation baselines and the model on one test subject.

    Every method is clipped to [0, 1] and scored on the same voxels; the
    table also holds the correlation between the model's sample sd and its
    absolute error (does the uncertainty map mean something?).
    """
    hr = load_volume(hr_path).get_fdata(dtype=np.float32)
    lr = load_volume(lr_path).get_fdata(dtype=np.float32)
    mask = load_volume(mask_path).get_fdata(dtype=np.float32) > 0.5
    sr = load_volume(sr_path).get_fdata(dtype=np.float32)
    sr_std = load_volume(sr_std_path).get_fdata(dtype=np.float32)
    if sr.shape != hr.shape or mask.shape != hr.shape:
        raise MrisrError(f"{sr_path}: shape {sr.shape} does not match the HR reference {hr.shape} / mask {mask.shape}")
    estimates = {method: np.clip(upsample(lr, hr.shape, method), 0, 1) for method in INTERPOLATION_ORDERS}
    estimates[model_name] = np.clip(sr, 0, 1)
    rows = [{"subject": subject, "method": method, **evaluate_volume(hr, estimate, mask)}
            for method, estimate in estimates.items()]
    table = pd.DataFrame(rows)
    error = np.abs(estimates[model_name] - hr)[mask]
    spread = sr_std[mask]
    correlation = float(np.corrcoef(spread, error)[0, 1]) if spread.std() > 0 else float("nan")
    table["uncertainty_error_corr"] = np.where(table["method"] == model_name, correlation, np.nan)
    with atomic_path(metrics_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.5f")
    comparison_panel({"LR (nearest)": estimates["nearest"], "cubic spline": estimates["cubic"],
                      model_name: estimates[model_name], "HR": hr},
                     f"test subject {subject}", panel_path, error_of=model_name, uncertainty=sr_std)
    log.info("%s: PSNR in brain %s", subject, ", ".join(f"{m} {v:.2f}" for m, v in zip(table["method"], table["psnr_brain"])))
    return table


def summarize(metric_paths: list[str], summary_path: str) -> pd.DataFrame:
    """Concatenate per-subject tables into one long table (one row per subject and method)."""
    table = pd.concat([pd.read_csv(path) for path in metric_paths], ignore_index=True)
    with atomic_path(summary_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.5f")
    log.info("%d rows from %d subject(s) -> %s", len(table), table["subject"].nunique(), summary_path)
    return table


def method_summary(table: pd.DataFrame, baseline: str = "cubic") -> pd.DataFrame:
    """Mean and sd over subjects per method, and the mean paired difference to ``baseline``."""
    metrics = ["psnr_brain", "ssim_brain", "psnr_whole", "ssim_whole", "hf_error_brain"]
    grouped = table.groupby("method", sort=False)[metrics]
    summary = grouped.mean().add_suffix("_mean").join(grouped.std(ddof=0).add_suffix("_sd"))
    for metric in ("psnr_brain", "ssim_brain"):
        by_subject = table.pivot(index="subject", columns="method", values=metric)
        summary[f"{metric}_vs_{baseline}"] = by_subject.sub(by_subject[baseline], axis=0).mean()
    summary["n_subjects"] = table.groupby("method", sort=False)["subject"].nunique()
    return summary.reset_index()
