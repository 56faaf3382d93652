"""The real workflow, end to end, on the tiny config: outputs, report, reruns, determinism, bad input."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from conftest import snakemake
from helpers import REPO, TINY_CONFIG
from mrisr.evaluation.scoring import UNCERTAINTY_METRICS
from mrisr.model.modelfile import read_calibration, read_model_file

pytestmark = pytest.mark.workflow

SUBJECTS = ["mni152", "mni152def01", "robex"]
TEST_SUBJECT = "robex"
TRAINED = ["diffusion3d", "triplanar", "x4to2", "single4"]
EVALUATED = {"diffusion3d": "2", "triplanar": "2", "cascade": "4", "single4": "4"}
# Evaluated models with a calibrated error scale: not the cascade (its stages are calibrated on real LR scans alone).
CALIBRATED = ["diffusion3d", "triplanar", "single4"]
BASELINES = ["nearest", "trilinear", "cubic", "back_projection"]
# tests/data/tiny.yaml scores the test subject from LRs of two degradations: the pairs' own (today's paths) and kspace.
OTHER_DEGRADATION = "kspace"


def test_every_output_exists(tiny_run):
    expected = ["results/report/index.html", "results/report/provenance.json", "results/split.tsv",
                "results/metrics/summary.csv"]
    for model in TRAINED:
        expected += [f"results/models/{model}/{name}"
                     for name in ("weights.pt", "model.pt", "train_log.csv", "training_curves.png", "validation.png",
                                  "reliability.png")]
    for model in EVALUATED:
        expected += [f"results/sr/{model}/{TEST_SUBJECT}/{name}" for name in ("sr.nii.gz", "sr_std.nii.gz",
                                                                             "sr_view_sd.nii.gz")]
        expected += [f"results/metrics/{TEST_SUBJECT}/model_{model}{name}.csv"
                     for name in ("", "_calibration", "_uncertainty", "_reliability")]
    for model in CALIBRATED:
        expected += [f"results/sr/{model}/{TEST_SUBJECT}/sr_{name}" for name in ("scale.nii.gz", "lower.nii.gz",
                                                                                "upper.nii.gz", "scale.json")]
    for factor in ("2", "4"):
        expected += [f"results/metrics/{TEST_SUBJECT}/baselines_x{factor}.csv",
                     f"results/figures/{TEST_SUBJECT}_x{factor}_panel.png"]
    # The other degradation: the test subject's LRs, every model's estimate from them and the scores, in its folder.
    other = OTHER_DEGRADATION
    expected += [f"results/pairs/{TEST_SUBJECT}/x{factor}/{other}/{name}" for factor in ("2", "4")
                 for name in ("lr.nii.gz", "pair.json")]
    expected += [f"results/metrics/{TEST_SUBJECT}/{other}/baselines_x{factor}.csv" for factor in ("2", "4")]
    for model in EVALUATED:
        expected += [f"results/sr/{model}/{TEST_SUBJECT}/{other}/sr.nii.gz",
                     f"results/metrics/{TEST_SUBJECT}/{other}/model_{model}.csv"]
    for subject in SUBJECTS:
        expected += [f"results/raw/{subject}/T1w.nii.gz", f"results/raw/{subject}/T1w.json",
                     f"results/preproc/{subject}/T1w_brain.nii.gz", f"results/preproc/{subject}/brain_mask.nii.gz",
                     f"results/preproc/{subject}/xfm_to_template.mat", f"results/preproc/{subject}/qc.png",
                     f"results/preproc/{subject}/timing.csv"]
        expected += [f"results/pairs/{subject}/x{factor}/{name}" for factor in ("2", "4")
                     for name in ("lr.nii.gz", "pair.json")]
    missing = [path for path in expected if not (tiny_run / path).is_file()]
    assert not missing
    for model in TRAINED:  # removed once training finished
        assert not any((tiny_run / f"results/models/{model}" / name).exists()
                       for name in ("checkpoint.pt", "cache", "val_cache", "job.json"))
    for rule in ("train/diffusion3d", "report", "preprocess/robex", "super_resolve/cascade/robex"):
        assert (tiny_run / "logs" / f"{rule}.log").stat().st_size > 0


def test_grids_and_model_outputs_keep_their_geometry(tiny_run):
    hr = nib.load(tiny_run / f"results/preproc/{TEST_SUBJECT}/T1w_brain.nii.gz")
    assert hr.shape == (32, 32, 32)
    for factor, lr_shape in (("2", (16, 16, 16)), ("4", (8, 8, 8))):
        lr = nib.load(tiny_run / f"results/pairs/{TEST_SUBJECT}/x{factor}/lr.nii.gz")
        assert lr.shape == lr_shape
        np.testing.assert_allclose(lr.header.get_zooms(), int(factor) * np.asarray(hr.header.get_zooms()))
    for model in EVALUATED:
        sr = nib.load(tiny_run / f"results/sr/{model}/{TEST_SUBJECT}/sr.nii.gz")
        assert sr.shape == hr.shape
        np.testing.assert_allclose(sr.affine, hr.affine)
    brain = hr.get_fdata()
    assert brain.max() <= 1 and brain.min() >= 0 and (brain > 0).mean() > 0.3


def test_models_and_baselines_are_compared_on_the_same_voxels(tiny_run):
    every = pd.read_csv(tiny_run / "results/metrics/summary.csv", dtype={"factor": str})
    for degradation, rows in every.groupby("degradation"):
        methods = {(row.factor, row.method) for row in rows.itertuples()}
        assert methods == {*((f, b) for f in ("2", "4") for b in BASELINES), *((f, m) for m, f in EVALUATED.items())}
    assert set(every["degradation"]) == {"spline", OTHER_DEGRADATION}
    # The uncertainty figures exist for the models with a calibrated scale only.
    uncertainty = ["uncertainty_error_corr", *UNCERTAINTY_METRICS]
    assert np.isfinite(every.select_dtypes("number").drop(columns=uncertainty).to_numpy()).all()
    assert every.loc[every["method"].isin(CALIBRATED), UNCERTAINTY_METRICS].notna().all().all()
    assert every.loc[~every["method"].isin(CALIBRATED), UNCERTAINTY_METRICS].isna().all().all()
    summary = every[every["degradation"] == "spline"]
    assert set(summary["subject"]) == {TEST_SUBJECT}
    metrics = summary[["psnr_brain", "ssim_brain", "psnr_whole", "ssim_whole", "lr_psnr", "dice_gm"]]
    assert np.isfinite(metrics.to_numpy()).all()
    assert ((summary["ssim_brain"] > 0) & (summary["ssim_brain"] <= 1)).all()
    by_method = summary.set_index(["factor", "method"])
    assert by_method.loc[("2", "cubic"), "psnr_brain"] > by_method.loc[("2", "nearest"), "psnr_brain"]
    assert by_method.loc[("2", "cubic"), "psnr_brain"] > by_method.loc[("4", "cubic"), "psnr_brain"]  # 4x is harder
    # Back-projection explains the LR better than the interpolation it starts from.
    assert by_method.loc[("2", "back_projection"), "lr_psnr"] > by_method.loc[("2", "cubic"), "lr_psnr"]


def test_the_triplanar_model_and_the_cascade_give_their_own_estimates(tiny_run):
    def estimate(model):
        return nib.load(tiny_run / f"results/sr/{model}/{TEST_SUBJECT}/sr.nii.gz").get_fdata()

    cubic = pd.read_csv(tiny_run / f"results/metrics/{TEST_SUBJECT}/baselines_x2.csv").set_index("method")
    for first, second in (("triplanar", "diffusion3d"), ("cascade", "single4")):
        assert np.abs(estimate(first) - estimate(second)).max() > 1e-3, (first, second)
    for model, factor in EVALUATED.items():
        row = pd.read_csv(tiny_run / f"results/metrics/{TEST_SUBJECT}/model_{model}.csv", dtype={"factor": str})
        assert row["factor"].item() == factor and row["kind"].item() in ("diffusion3d", "triplanar", "cascade",
                                                                          "regression3d")
    # Untrained-ish tiny models start from the interpolation: no estimate is far from cubic at its factor.
    assert abs(pd.read_csv(tiny_run / f"results/metrics/{TEST_SUBJECT}/model_triplanar.csv")["psnr_brain"].item()
               - cubic.loc["cubic", "psnr_brain"]) < 3
    spec = read_model_file(tiny_run / "results/models/x4to2/model.pt")[0]
    assert spec.factor == [4.0] * 3 and spec.output_factor == [2.0] * 3 and spec.kind == "regression3d"


def test_calibrated_maps_bound_the_estimate_and_say_their_level(tiny_run):
    hr = nib.load(tiny_run / f"results/preproc/{TEST_SUBJECT}/T1w_brain.nii.gz").get_fdata()
    mask = nib.load(tiny_run / f"results/preproc/{TEST_SUBJECT}/brain_mask.nii.gz").get_fdata() > 0.5
    for model in CALIBRATED:
        folder = tiny_run / f"results/sr/{model}/{TEST_SUBJECT}"
        maps = {name: nib.load(folder / f"sr_{name}.nii.gz") for name in ("scale", "lower", "upper")}
        estimate = nib.load(folder / "sr.nii.gz").get_fdata()
        sidecar = json.loads((folder / "sr_scale.json").read_text())
        assert sidecar["interval"] == 0.9 and "90 %" in maps["lower"].header["descrip"].tobytes().decode()
        scale, lower, upper = (maps[name].get_fdata() for name in ("scale", "lower", "upper"))
        assert scale.min() > 0
        np.testing.assert_allclose(upper - estimate, sidecar["halfwidth"] * scale, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(estimate - lower, sidecar["halfwidth"] * scale, rtol=1e-4, atol=1e-6)
        # The evaluation's coverage is the share of brain voxels the written bounds hold.
        table = pd.read_csv(tiny_run / f"results/metrics/{TEST_SUBJECT}/model_{model}_uncertainty.csv")
        rows = table.set_index("predictor")
        held = np.mean((lower[mask] <= hr[mask]) & (hr[mask] <= upper[mask]))
        assert abs(rows.loc["calibrated scale", "coverage_90"] - held) < 1e-3
        assert set(rows.index) == {"calibrated scale", "raw sample sd", "mirrored-view sd", "cubic gradient",
                                   "|estimate − cubic|"}
        assert rows[["spearman", "auroc_worst10"]].loc["calibrated scale"].between(-1, 1).all()
    # The calibration is in the model file a user takes to the CLI; the cascade, without one, writes the raw sd only.
    assert read_calibration(tiny_run / "results/models/diffusion3d/model.pt")["subjects"] == ["mni152def01"]
    assert read_calibration(tiny_run / "results/models/diffusion3d/weights.pt") is None
    assert not (tiny_run / f"results/sr/cascade/{TEST_SUBJECT}/sr_scale.nii.gz").exists()


def test_the_uncertainty_sweep_recalibrates_each_sampler_variant_as_the_workflow_does(tiny_run, tmp_path):
    output = tmp_path / "sweep.json"
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "uncertainty.py"), "--workdir", str(tiny_run),
                             "--config", str(TINY_CONFIG), "--variants", "default", "steps1", "--output", str(output)],
                            capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    rows = pd.DataFrame(json.loads(output.read_text())["rows"]).set_index("variant")
    assert list(rows.index) == ["default", "steps1"] and set(rows["subject"]) == {TEST_SUBJECT}
    # The default variant is the workflow's own calibration and sampling: the same figures as its evaluation.
    table = pd.read_csv(tiny_run / f"results/metrics/{TEST_SUBJECT}/model_diffusion3d_uncertainty.csv")
    workflow = table.set_index("predictor").loc["calibrated scale"]
    for column in ("coverage_90", "spearman", "auroc_worst10"):
        assert abs(rows.loc["default", f"scale_{column}"] - workflow[column]) < 1e-3, column
    assert rows.loc["steps1"].drop("subject").astype(float).notna().all()


def test_report_is_self_contained_and_has_the_tables(tiny_run):
    html = (tiny_run / "results/report/index.html").read_text()
    for heading in ("Summary", "Models", "Test subjects", "Training", "Data and preprocessing",
                    "Configuration and software"):
        assert heading in html
    for method in [*BASELINES, *EVALUATED]:
        assert f"<td>{method}</td>" in html
    assert "Δ PSNR vs cubic" in html and "Δ PSNR vs BP" in html and "± " in html and "Calibration" in html
    assert "Uncertainty, brain voxels" in html and "Reliability" in html and "<td>calibrated scale</td>" in html
    # One summary table per degradation, saying which operator back-projection assumes.
    assert "LR by spline (" in html and f"LR by {OTHER_DEGRADATION} (k-space truncation)" in html
    assert html.count("back_projection (assumes spline)") == 2 * 2  # both degradations, both factors
    assert "brains never used in training" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # no external resources
    images = re.findall(r'<img src="([^"]{0,30})', html)
    assert len(images) >= 15 and all(src.startswith("data:image/png;base64,") for src in images)
    assert re.search(r"git commit <code>([0-9a-f]{40}(-dirty)?|unknown)</code>", html)
    split = pd.read_csv(tiny_run / "results/split.tsv", sep="\t").set_index("subject")
    assert split.loc["mni152def01", "derived_from"] == "mni152" and split.loc["robex", "role"] == "test"


def test_snakemake_report_builds(tiny_run):
    snakemake(tiny_run, "--configfile", str(TINY_CONFIG), "--report", "snakemake_report.html")
    assert (tiny_run / "snakemake_report.html").stat().st_size > 10_000


def planned_jobs(workdir, config: dict, *extra: str) -> dict[str, int]:
    """The rules (and job counts) a dry run would execute with the config changed to ``config``."""
    changed = workdir / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--configfile", str(changed), *extra, "--dry-run", check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = result.stdout.split("Job stats:")[1].split("total")[0]
    return {line.split()[0]: int(line.split()[1]) for line in stats.splitlines()[3:] if line.strip()}


DOWNSTREAM = {"calibrate", "super_resolve", "super_resolve_raw", "evaluate", "panel", "summarize", "report", "all"}


def changed(section_path, value, drop=()):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    *parents, key = section_path
    target = config
    for part in parents:
        target = target.setdefault(part, {})
    target[key] = value
    for model in drop:
        config["models"][model] = None
    return config


# Every evaluated model samples and is scored twice: from the LR of each degradation of tests/data/tiny.yaml.
@pytest.mark.parametrize("edit,expected", [
    # shared training settings: every trained model retrains and recalibrates, every model re-samples (the cascade
    # without calibration)
    (changed(["train", "steps"], 14),
     {"train": 4, "calibrate": 4, "super_resolve": 6, "super_resolve_raw": 2, "evaluate": 8}),
    # one model's own settings: that model only
    (changed(["models", "triplanar", "train", "steps"], 9),
     {"train": 1, "calibrate": 1, "super_resolve": 2, "evaluate": 2}),
    # the sampler: every model that samples with it recalibrates and re-samples, nothing retrains (the regression
    # models take one pass whatever it says)
    (changed(["sampler", "steps"], 4), {"calibrate": 2, "super_resolve": 4, "super_resolve_raw": 2, "evaluate": 6}),
    # the factor: new pairs, retraining and re-sampling of the models that start from it; nothing upstream
    (changed(["pairs", "factor"], [2, 2, 4], drop=["cascade"]),
     {"pairs": 4, "train": 2, "calibrate": 2, "super_resolve": 4, "evaluate": 4, "evaluate_baselines": 2}),
    # one more evaluated degradation: its LRs of the test subject (both factors), every model and baseline from them
    (changed(["evaluate", "degradations"], ["spline", "kspace", "block"]),
     {"pairs": 2, "super_resolve": 3, "super_resolve_raw": 1, "evaluate": 4, "evaluate_baselines": 2}),
    # a degradation's definition: its pairs, and the model that trains on it (triplanar draws from spline and block)
    (changed(["degradations", "block", "noise_std"], 0.02),
     {"train": 1, "calibrate": 1, "super_resolve": 2, "evaluate": 2}),
    (changed(["degradations", "kspace", "noise_std"], 0.02),
     {"pairs": 2, "super_resolve": 3, "super_resolve_raw": 1, "evaluate": 4, "evaluate_baselines": 2}),
])
def test_a_config_change_reruns_its_stage_and_nothing_before(tiny_run, edit, expected):
    jobs = planned_jobs(tiny_run, edit)
    assert {rule: count for rule, count in jobs.items() if rule in expected} == expected
    assert jobs.get("calibrate", 0) == expected.get("calibrate", 0)  # recalibrating is a stage of its own
    assert set(jobs) - set(expected) <= DOWNSTREAM
    assert "Nothing to be done" in snakemake(tiny_run, "--configfile", str(TINY_CONFIG), "--dry-run").stdout


def test_a_pretrained_model_is_applied_without_training(tiny_run, tmp_path):
    pretrained = str(tiny_run / "results/models/diffusion3d/model.pt")
    config = changed(["models", "theirs"], {"pretrained": pretrained, "sampler": {"steps": 2}},
                     drop=["diffusion3d", "triplanar", "x4to2", "cascade", "single4"])
    config["split"] = {"test": ["robex"]}  # no training subjects needed
    jobs = planned_jobs(tiny_run, config)
    assert "train" not in jobs and jobs["super_resolve"] == 2 and jobs["evaluate"] == 2  # from each degradation's LR
    assert "calibrate" not in jobs  # the file's own calibration is used
    # A file without calibration (here the weights before it): the estimate and the raw sd only.
    config["models"]["theirs"]["pretrained"] = str(tiny_run / "results/models/diffusion3d/weights.pt")
    jobs = planned_jobs(tiny_run, config)
    assert "super_resolve" not in jobs and jobs["super_resolve_raw"] == 2 and jobs["evaluate"] == 2
    old = tmp_path / "old.pt"
    torch.save({"state_dict": {}, "model": {}, "diffusion": {}}, old)
    config["models"]["theirs"]["pretrained"] = str(old)
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tiny_run, "--configfile", str(tmp_path / "old.yaml"), "--dry-run", check=False)
    assert result.returncode != 0 and "earlier mrisr (format 1)" in result.stderr and "retrain" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_second_run_from_scratch_gives_identical_metrics(tiny_run, tmp_path):
    # Every stage again in a copy, from fetching (and deriving) the subjects, through registration, training
    # (two torchrun processes) and sampling, for the 3D diffusion model and the baselines.
    again = shutil.copytree(tiny_run, tmp_path / "again", symlinks=True)
    metrics = [f"results/metrics/{TEST_SUBJECT}/{name}.csv" for name in ("model_diffusion3d", "baselines_x2")]
    snakemake(again, "--configfile", str(TINY_CONFIG), "--forcerun", "fetch", "--", *metrics)
    train_log = "logs/train/diffusion3d.log"
    assert (again / train_log).stat().st_mtime > (tiny_run / train_log).stat().st_mtime
    for path in metrics:
        pd.testing.assert_frame_equal(pd.read_csv(tiny_run / path), pd.read_csv(again / path))


def test_unknown_config_key_stops_before_any_job(tiny_run):
    result = snakemake(tiny_run, "--configfile", str(TINY_CONFIG), "--config", "trian={}", check=False)
    assert result.returncode != 0
    assert "mrisr: unknown config key trian" in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_raw_scan_fails_with_the_file_name_and_keeps_other_results(tiny_run):
    raw = tiny_run / f"results/raw/{TEST_SUBJECT}/T1w.nii.gz"
    backup = raw.read_bytes()
    preprocessed = tiny_run / f"results/preproc/{TEST_SUBJECT}"
    shutil.copy2(raw, tiny_run / "raw_backup.nii.gz")  # copies keep modification times
    shutil.copytree(preprocessed, tiny_run / "preproc_backup")
    try:
        raw.write_bytes(backup[: len(backup) // 3])
        result = snakemake(tiny_run, "--configfile", str(TINY_CONFIG), "--forcerun", "preprocess",
                           "--allowed-rules", "preprocess", "--", f"results/preproc/{TEST_SUBJECT}/T1w_brain.nii.gz",
                           check=False)
        log = (tiny_run / f"logs/preprocess/{TEST_SUBJECT}.log").read_text()
        assert result.returncode != 0
        assert f"results/raw/{TEST_SUBJECT}/T1w.nii.gz: not a readable NIfTI image" in log
        assert "Traceback" not in log
        assert not (tiny_run / f"results/preproc/{TEST_SUBJECT}/T1w_brain.nii.gz").exists()
        assert (tiny_run / "results/preproc/mni152/T1w_brain.nii.gz").exists()
        assert (tiny_run / "results/models/diffusion3d/model.pt").exists()
    finally:
        shutil.move(tiny_run / "raw_backup.nii.gz", raw)
        shutil.rmtree(preprocessed, ignore_errors=True)
        shutil.move(tiny_run / "preproc_backup", preprocessed)
    # The other tests share this run: it is back as it was.
    assert "Nothing to be done" in snakemake(tiny_run, "--configfile", str(TINY_CONFIG), "--dry-run").stdout


def write_local_config(tmp_path, folder, **split) -> str:
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump({"data": {"source": "local", "local": {"path": str(folder)}},
                                    "split": split or {"random": {"val": 1, "test": 1}}}))
    return str(path)


def bids_dataset(root, subjects, shape=(12, 12, 12)):
    for subject in subjects:
        anat = root / f"sub-{subject}" / "anat"
        anat.mkdir(parents=True)
        nib.save(nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4)), anat / f"sub-{subject}_T1w.nii.gz")
    (root / "dataset_description.json").write_text('{"Name": "test", "BIDSVersion": "1.8.0"}')


def test_local_bids_dataset_is_planned_with_a_seeded_split(tmp_path):
    bids_dataset(tmp_path / "bids", ["01", "02", "03", "04"])
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = snakemake(workdir, "--configfile", write_local_config(tmp_path, tmp_path / "bids"), "--dry-run")
    for subject in ("01", "02", "03", "04"):
        assert f"results/raw/{subject}/T1w.nii.gz" in result.stdout


def test_sample_volumes_in_a_user_config_replace_the_default_ones(tmp_path):
    config = tmp_path / "volumes.yaml"
    config.write_text(yaml.safe_dump({"data": {"embedded": {"derived_per_volume": {"mni152": 2}}},
                                      "split": {"random": {"val": 1, "test": 1}}}))
    result = snakemake(tmp_path, "--configfile", str(config), "--dry-run")
    planned = set(re.findall(r"results/raw/(\w+)/T1w.nii.gz", result.stdout))
    assert planned == {"mni152", "mni152def01", "mni152def02"}


@pytest.mark.parametrize("problem,expected", [
    ("empty", "data.local: no scans"),
    ("4d", "sub-02_T1w.nii.gz"),
])
def test_bad_local_data_stops_before_any_job(tmp_path, problem, expected):
    bids_dataset(tmp_path / "bids", ["01"])
    if problem == "empty":
        shutil.rmtree(tmp_path / "bids" / "sub-01")
    else:
        bids_dataset(tmp_path / "other", ["02"], shape=(12, 12, 12, 3))
        shutil.move(tmp_path / "other" / "sub-02", tmp_path / "bids" / "sub-02")
    workdir = tmp_path / "run"
    workdir.mkdir()
    result = snakemake(workdir, "--configfile", write_local_config(tmp_path, tmp_path / "bids", train=["01"],
                                                                   test=["02"]), "--dry-run", check=False)
    assert result.returncode != 0
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (workdir / "results").exists()


def test_missing_skull_strip_tool_stops_before_any_job(tmp_path, monkeypatch):
    if shutil.which("bet"):
        pytest.skip("FSL bet is installed here")
    config = tmp_path / "bet.yaml"
    config.write_text(yaml.safe_dump({"preprocess": {"skull_strip": "bet"}}))
    result = snakemake(tmp_path, "--configfile", str(TINY_CONFIG), str(config), "--dry-run", check=False)
    assert result.returncode != 0 and "bet needs FSL" in result.stderr


def test_workflow_passes_snakemake_lint(tmp_path):
    result = snakemake(tmp_path, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr
