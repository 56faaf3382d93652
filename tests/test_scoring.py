"""Evaluation: the baselines, tissue Dice, calibration, and the summary's paired differences."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.ndimage import gaussian_filter

from helpers import load_config
from mrisr.model.spec import degradation_of
from mrisr.pairs.degrade import degrade
from mrisr.evaluation.scoring import baseline_estimate, calibration_table, method_summary, score
from mrisr.evaluation.tissue import segment, tissue_dice
from mrisr.preprocess.qc import dice

DEGRADATION = degradation_of(load_config())


def phantom(shape=(40, 40, 40)):
    """Three nested tissues (intensities 0.25, 0.55, 0.8) with smooth, irregular borders."""
    field = gaussian_filter(np.random.default_rng(3).standard_normal(shape), 3)
    radius = np.sqrt(((np.indices(shape) - np.array(shape)[:, None, None, None] / 2) ** 2).sum(axis=0))
    level = radius / shape[0] + field * 0.5
    image = np.select([level < 0.2, level < 0.32, level < 0.45], [0.8, 0.55, 0.25], 0.0)
    return gaussian_filter(image, 0.6).astype(np.float32), level < 0.45


def test_back_projection_beats_cubic_and_reproduces_the_lr():
    hr, mask = phantom()
    lr = degrade(hr, 2, DEGRADATION)
    rows = {name: score(hr, lr, mask, baseline_estimate(name, lr, hr.shape, 2, DEGRADATION, 2), 2, DEGRADATION, 3)
            for name in ("nearest", "trilinear", "cubic", "back_projection")}
    assert rows["back_projection"]["psnr_brain"] > rows["cubic"]["psnr_brain"] > rows["nearest"]["psnr_brain"]
    assert rows["back_projection"]["lr_psnr"] > rows["cubic"]["lr_psnr"] + 5
    assert np.isnan(rows["cubic"]["uncertainty_error_corr"])


def test_segmentation_finds_the_tissues_and_dice_rewards_the_better_estimate():
    hr, mask = phantom()
    labels = segment(hr, mask, 3)
    assert set(np.unique(labels[mask])) == {1, 2, 3} and not labels[~mask].any()
    assert hr[labels == 1].mean() < hr[labels == 2].mean() < hr[labels == 3].mean()
    assert tissue_dice(hr, hr, mask, 3) == {"dice_csf": 1.0, "dice_gm": 1.0, "dice_wm": 1.0}
    blurred, very_blurred = gaussian_filter(hr, 0.7), gaussian_filter(hr, 1.5)
    for tissue in ("dice_csf", "dice_gm", "dice_wm"):
        assert tissue_dice(hr, blurred, mask, 3)[tissue] > tissue_dice(hr, very_blurred, mask, 3)[tissue]
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


def test_calibration_bins_hold_equal_counts_and_find_a_calibrated_spread():
    rng = np.random.default_rng(0)
    spread = rng.uniform(0.01, 0.2, 100_000)
    error = rng.standard_normal(spread.size) * spread  # errors drawn with exactly that sd
    table = calibration_table(spread, error)
    assert len(table) == 10 and table["voxels"].min() == table["voxels"].max() == 10_000
    np.testing.assert_allclose(table["rmse"], table["mean_sd"], rtol=0.05)
    assert table["mean_sd"].is_monotonic_increasing


def test_a_spread_that_marks_the_error_correlates_with_it():
    hr, mask = phantom()
    rng = np.random.default_rng(1)
    spread = rng.uniform(0.0, 0.1, hr.shape).astype(np.float32)
    estimate = hr + rng.standard_normal(hr.shape).astype(np.float32) * spread
    row = score(hr, degrade(hr, 2, DEGRADATION), mask, estimate, 2, DEGRADATION, 3, spread)
    assert row["uncertainty_error_corr"] > 0.4


def test_summary_differences_are_paired_within_each_factor():
    rows = [("a", "cubic", "2", 30.0), ("a", "model", "2", 31.0), ("b", "cubic", "2", 20.0), ("b", "model", "2", 22.0),
            ("a", "back_projection", "2", 30.5), ("b", "back_projection", "2", 20.5),
            ("a", "cubic", "4", 25.0), ("a", "cascade", "4", 25.4)]
    table = pd.DataFrame([{"subject": s, "method": m, "factor": f, "kind": "x", "psnr_brain": v, "ssim_brain": 0.9}
                          for s, m, f, v in rows])
    summary = method_summary(table).set_index(["factor", "method"])
    assert summary.loc[("2", "model"), "psnr_brain_vs_cubic"] == pytest.approx(1.5)
    assert summary.loc[("2", "model"), "psnr_brain_vs_back_projection"] == pytest.approx(1.0)
    assert summary.loc[("2", "model"), "psnr_brain_mean"] == pytest.approx(26.5)
    assert summary.loc[("2", "cubic"), "psnr_brain_sd"] == pytest.approx(5.0)
    assert summary.loc[("4", "cascade"), "psnr_brain_vs_cubic"] == pytest.approx(0.4)
    assert np.isnan(summary.loc[("4", "cascade"), "psnr_brain_vs_back_projection"])


def test_summary_differences_are_paired_within_each_degradation():
    rows = [("a", "cubic", "spline", 30.0), ("a", "model", "spline", 31.0),
            ("a", "cubic", "kspace", 26.0), ("a", "model", "kspace", 26.5)]
    table = pd.DataFrame([{"subject": s, "method": m, "factor": "2", "degradation": d, "kind": "x", "psnr_brain": v,
                           "ssim_brain": 0.9} for s, m, d, v in rows])
    summary = method_summary(table).set_index(["degradation", "factor", "method"])
    assert summary.loc[("spline", "2", "model"), "psnr_brain_vs_cubic"] == pytest.approx(1.0)
    assert summary.loc[("kspace", "2", "model"), "psnr_brain_vs_cubic"] == pytest.approx(0.5)
    assert summary.loc[("kspace", "2", "cubic"), "psnr_brain_mean"] == pytest.approx(26.0)


def test_the_report_gives_one_summary_per_degradation_saying_what_back_projection_assumes():
    from helpers import load_config
    from mrisr.evaluation.report import summary_blocks

    config = load_config({"evaluate": {"degradations": ["kspace", "spline"]}})
    table = pd.DataFrame([{"subject": "a", "method": m, "factor": "2", "degradation": d, "kind": "x",
                           "psnr_brain": 30.0, "ssim_brain": 0.9}
                          for d in ("spline", "kspace") for m in ("cubic", "back_projection")])
    blocks = summary_blocks(table, config)
    assert [block["heading"].split(" (")[0] for block in blocks] == ["LR by kspace", "LR by spline"]
    assert "back-projection assume spline" in blocks[0]["heading"] and "k-space truncation" in blocks[0]["heading"]
    assert all("back_projection (assumes spline)" in block["table"] for block in blocks)


def test_the_panel_of_thick_slices_shows_the_planes_across_them(tmp_path):
    import matplotlib.image

    from mrisr.evaluation.scoring import draw_panel
    from mrisr.figures import planes_across
    from mrisr.io import save_volume

    assert planes_across([1, 1, 3]) == [0, 1] and planes_across([3, 1, 1]) == [1, 2]
    assert planes_across(2) == planes_across([2, 2, 2]) == [0, 1, 2]
    hr, mask = phantom((24, 24, 24))
    thick = load_config()["degradations"]["thick"]
    heights = {}
    for factor in ([2, 2, 2], [1, 1, 3]):
        files = {name: str(tmp_path / f"{name}_{factor[0]}.nii.gz") for name in ("hr", "lr", "mask", "sr")}
        for name, volume in (("hr", hr), ("lr", degrade(hr, factor, thick)), ("mask", mask.astype(np.float32)),
                             ("sr", hr)):
            save_volume(volume, np.eye(4), files[name])
        panel = tmp_path / f"panel_{factor[0]}.png"
        draw_panel("phantom", factor, files["hr"], files["lr"], files["mask"], {"model": files["sr"]}, {},
                   thick, 2, str(panel))
        heights[factor[2]] = matplotlib.image.imread(panel).shape[0]
    # Two rows of slices (sagittal and coronal, both across the slices) against three.
    assert 0.55 < heights[3] / heights[2] < 0.8
