"""Calibrated uncertainty: the fitted scale ranks errors, the conformal intervals hold their level on new data, the
calibration survives the model file, and the evaluation's figures can say no."""
from __future__ import annotations

import numpy as np
import torch
from scipy import stats

from helpers import tiny_config
from mrisr.evaluation.scoring import auroc, ranking, uncertainty_tables
from mrisr.inference.calibration import (
    conformal_quantile, empirical_coverage, error_scale, feature_maps, fit_calibration, interval_halfwidth,
)
from mrisr.model.modelfile import read_calibration, read_model_file, save_calibrated, save_model
from mrisr.model.spec import model_spec

SHAPE = (32, 32, 32)


def heteroscedastic(seed: int) -> dict[str, np.ndarray]:
    """A volume whose error grows with the sample sd and at edges of the cubic image, as a model's does; the
    estimate is the truth plus that error."""
    rng = np.random.default_rng(seed)
    cubic = np.clip(np.cumsum(rng.random(SHAPE), axis=0) / SHAPE[0], 0, 1).astype(np.float32)
    sample_sd = rng.gamma(2.0, 0.01, SHAPE).astype(np.float32)
    view_sd = (sample_sd * rng.uniform(0.5, 1.5, SHAPE)).astype(np.float32)
    true_scale = 2.5 * sample_sd + 0.004
    truth = cubic + rng.normal(0, 0.01, SHAPE)
    estimate = (truth + rng.standard_t(5, SHAPE) * true_scale).astype(np.float32)
    return {"cubic": cubic, "sample_sd": sample_sd, "view_sd": view_sd, "truth": truth, "estimate": estimate,
            "true_scale": true_scale}


def fitted(seed: int = 0) -> dict:
    volume = heteroscedastic(seed)
    features = feature_maps(volume["cubic"], volume["estimate"], volume["sample_sd"], volume["view_sd"])
    return fit_calibration({name: value.ravel() for name, value in features.items()},
                           (volume["estimate"] - volume["truth"]).ravel(), seed=seed)


def test_conformal_quantile_takes_the_finite_sample_rank():
    residuals = np.arange(1, 10, dtype=float)  # n = 9: the 90 % quantile is the ceil(10 * 0.9) = 9th smallest
    assert conformal_quantile(residuals, 0.9) == 9.0 and conformal_quantile(residuals, 0.5) == 5.0


def test_intervals_fitted_on_one_volume_hold_their_level_on_another():
    calibration = fitted(seed=0)
    new = heteroscedastic(seed=1)  # other noise, other voxels: exchangeable with the calibration voxels
    scale = error_scale(calibration, new["cubic"], new["estimate"], new["sample_sd"], new["view_sd"])
    error = new["estimate"] - new["truth"]
    for level in (0.5, 0.8, 0.9, 0.95):
        assert abs(empirical_coverage(error, interval_halfwidth(calibration, level) * scale) - level) < 0.015
    # The scale ranks voxels by error nearly as well as the scale that made the errors.
    rho = stats.spearmanr(scale.ravel(), np.abs(error).ravel())[0]
    best = stats.spearmanr(new["true_scale"].ravel(), np.abs(error).ravel())[0]
    assert rho > best - 0.02 and rho > 0.3
    # ... and the sd itself taken for a Gaussian standard error would not cover at 90 %.
    assert empirical_coverage(error, 1.645 * new["sample_sd"]) < 0.85


def test_a_feature_without_spread_gets_no_weight():
    volume = heteroscedastic(seed=2)
    features = feature_maps(volume["cubic"], volume["estimate"], np.zeros(SHAPE, np.float32), volume["view_sd"])
    calibration = fit_calibration({name: value.ravel() for name, value in features.items()},
                                  (volume["estimate"] - volume["truth"]).ravel(), seed=2)
    assert calibration["coefficients"][calibration["features"].index("log_sample_sd")] == 0.0
    assert np.all(np.isfinite(calibration["coefficients"])) and np.all(np.diff(calibration["quantiles"]) >= 0)


def test_the_model_file_keeps_the_calibration_as_plain_numbers(tmp_path):
    spec = model_spec(tiny_config(), "diffusion3d", [1.5] * 3, ["a"], {"git_commit": "abc"})
    save_model(tmp_path / "weights.pt", spec, spec.build_network())
    assert read_calibration(tmp_path / "weights.pt") is None  # an uncalibrated file says so
    calibration = fitted()
    sampler = {**spec.sampler, "n_samples": 5, "interval": 0.8}
    save_calibrated(tmp_path / "weights.pt", tmp_path / "model.pt", sampler, calibration)
    assert read_calibration(tmp_path / "model.pt") == calibration
    assert read_model_file(tmp_path / "model.pt")[0].sampler == sampler  # the sampler it was calibrated for
    torch.load(tmp_path / "model.pt", weights_only=True)  # nothing in it needs unpickling


def test_auroc_and_ranking():
    error = np.linspace(0, 1, 1000)
    worst = error >= 0.9
    assert auroc(error, worst) == 1.0 and auroc(-error, worst) == 0.0
    noise = np.random.default_rng(0).random(1000)
    assert abs(auroc(noise, worst) - 0.5) < 0.1
    assert np.isnan(ranking(np.ones(1000), error)["spearman"])  # a flat map ranks nothing


def test_the_uncertainty_table_says_no_to_an_overconfident_map():
    volume = heteroscedastic(seed=3)
    calibration = fitted(seed=0)
    scale = error_scale(calibration, volume["cubic"], volume["estimate"], volume["sample_sd"], volume["view_sd"])
    mask = np.ones(SHAPE, bool)
    # The LR is the truth's cubic image at full size here: the cubic proxy sees edges of the truth.
    table, curves = uncertainty_tables(volume["truth"], volume["cubic"], mask, volume["estimate"],
                                       volume["sample_sd"], volume["view_sd"], scale, calibration)
    rows = table.set_index("predictor")
    assert abs(rows.loc["calibrated scale", "coverage_90"] - 0.9) < 0.015
    assert rows.loc["raw sample sd", "coverage_90"] < 0.85  # the raw sd read as Gaussian: no
    assert rows.loc["calibrated scale", "spearman"] > rows.loc["cubic gradient", "spearman"] + 0.1
    assert set(curves["predictor"]) == {"calibrated scale", "raw sample sd, Gaussian"}
