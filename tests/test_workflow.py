"""The real workflow, end to end, on the tiny config: outputs, report, reruns, determinism, bad input."""
from __future__ import annotations

import re
import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import TINY_CONFIG, snakemake

pytestmark = pytest.mark.workflow

SUBJECTS = ["mni152", "mni152def01", "robex"]
TEST_SUBJECT = "robex"


def test_every_output_exists(tiny_run):
    expected = ["results/report/index.html", "results/report/provenance.json", "results/split.tsv",
                "results/metrics/summary.csv", f"results/metrics/{TEST_SUBJECT}.csv",
                f"results/figures/{TEST_SUBJECT}_panel.png", "results/models/diffusion/model.pt",
                "results/models/diffusion/train_log.csv", "results/models/diffusion/training_curves.png",
                "results/models/diffusion/validation.png",
                f"results/sr/diffusion/{TEST_SUBJECT}/sr.nii.gz", f"results/sr/diffusion/{TEST_SUBJECT}/sr_std.nii.gz"]
    for subject in SUBJECTS:
        expected += [f"results/raw/{subject}/T1w.nii.gz", f"results/raw/{subject}/T1w.json",
                     f"results/preproc/{subject}/T1w_brain.nii.gz", f"results/preproc/{subject}/brain_mask.nii.gz",
                     f"results/preproc/{subject}/xfm_to_template.mat", f"results/preproc/{subject}/qc.png",
                     f"results/preproc/{subject}/timing.csv", f"results/pairs/{subject}/hr.nii.gz",
                     f"results/pairs/{subject}/lr.nii.gz", f"results/pairs/{subject}/pair.json"]
    missing = [path for path in expected if not (tiny_run / path).is_file()]
    assert not missing
    assert not (tiny_run / "results/models/diffusion/checkpoint.pt").exists()  # removed once training finished
    for rule in ("train", "report", "preprocess/robex", "super_resolve/diffusion/robex"):
        assert (tiny_run / "logs" / f"{rule}.log").stat().st_size > 0


def test_grids_and_model_output_keep_their_geometry(tiny_run):
    hr = nib.load(tiny_run / f"results/pairs/{TEST_SUBJECT}/hr.nii.gz")
    lr = nib.load(tiny_run / f"results/pairs/{TEST_SUBJECT}/lr.nii.gz")
    sr = nib.load(tiny_run / f"results/sr/diffusion/{TEST_SUBJECT}/sr.nii.gz")
    assert hr.shape == (32, 32, 32) and lr.shape == (16, 16, 16) and sr.shape == hr.shape
    np.testing.assert_allclose(lr.header.get_zooms(), 2 * np.asarray(hr.header.get_zooms()))
    np.testing.assert_allclose(sr.affine, hr.affine)
    brain = hr.get_fdata()
    assert brain.max() <= 1 and brain.min() >= 0 and (brain > 0).mean() > 0.3


def test_metrics_are_finite_for_every_method(tiny_run):
    summary = pd.read_csv(tiny_run / "results/metrics/summary.csv")
    assert set(summary["method"]) == {"nearest", "trilinear", "cubic", "diffusion"}
    assert set(summary["subject"]) == {TEST_SUBJECT}
    metrics = summary[["psnr_brain", "ssim_brain", "psnr_whole", "ssim_whole"]]
    assert np.isfinite(metrics.to_numpy()).all()
    assert ((summary["ssim_brain"] > 0) & (summary["ssim_brain"] <= 1)).all()
    by_method = summary.set_index("method")
    assert by_method.loc["cubic", "psnr_brain"] > by_method.loc["nearest", "psnr_brain"]


def test_report_is_self_contained_and_has_the_tables(tiny_run):
    html = (tiny_run / "results/report/index.html").read_text()
    for heading in ("Summary", "Test subjects", "Training", "Data and preprocessing", "Configuration and software"):
        assert heading in html
    assert html.count("<table") >= 5
    for method in ("nearest", "trilinear", "cubic", "diffusion"):
        assert f"<td>{method}</td>" in html
    assert "Δ vs cubic" in html and "± " in html
    assert "brains never used in training" in html
    assert not re.search(r'(src|href)="(https?:)?//', html)  # no external resources
    images = re.findall(r'<img src="([^"]{0,30})', html)
    assert len(images) >= 6 and all(src.startswith("data:image/png;base64,") for src in images)
    assert re.search(r"git commit <code>([0-9a-f]{40}(-dirty)?|unknown)</code>", html)
    split = pd.read_csv(tiny_run / "results/split.tsv", sep="\t").set_index("subject")
    assert split.loc["mni152def01", "derived_from"] == "mni152" and split.loc["robex", "role"] == "test"


def test_snakemake_report_builds(tiny_run):
    snakemake(tiny_run, "--configfile", str(TINY_CONFIG), "--report", "snakemake_report.html")
    assert (tiny_run / "snakemake_report.html").stat().st_size > 10_000


def planned_jobs(workdir, config: dict) -> set[str]:
    """The rules a dry run would execute after changing the config to ``config``."""
    changed = workdir / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    output = snakemake(workdir, "--configfile", str(changed), "--dry-run").stdout
    stats = output.split("Job stats:")[1].split("total")[0]
    return {line.split()[0] for line in stats.splitlines()[3:] if line.strip()}


@pytest.mark.parametrize("section,key,value,expected", [
    ("train", "steps", 14, {"train", "super_resolve", "evaluate", "summarize", "report", "all"}),
    ("sample", "steps", 4, {"super_resolve", "evaluate", "summarize", "report", "all"}),
    ("pairs", "factor", [2, 2, 4], {"pairs", "train", "super_resolve", "evaluate", "summarize", "report", "all"}),
])
def test_a_config_change_reruns_its_stage_and_nothing_before(tiny_run, section, key, value, expected):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config[section][key] = value
    assert planned_jobs(tiny_run, config) == expected
    assert "Nothing to be done" in snakemake(tiny_run, "--configfile", str(TINY_CONFIG), "--dry-run").stdout


def test_a_second_run_from_scratch_gives_identical_metrics(tiny_run):
    before = pd.read_csv(tiny_run / "results/metrics/summary.csv")
    # Every stage again, from fetching (and deriving) the subjects, through registration and training.
    snakemake(tiny_run, "--configfile", str(TINY_CONFIG), "--forcerun", "fetch")
    after = pd.read_csv(tiny_run / "results/metrics/summary.csv")
    pd.testing.assert_frame_equal(before, after)


def test_unknown_config_key_stops_before_any_job(tiny_run):
    result = snakemake(tiny_run, "--configfile", str(TINY_CONFIG), "--config", "trian={}", check=False)
    assert result.returncode != 0
    assert "mrisr: unknown config key trian" in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupt_raw_scan_fails_with_the_file_name_and_keeps_other_results(tiny_run):
    raw = tiny_run / f"results/raw/{TEST_SUBJECT}/T1w.nii.gz"
    backup = raw.read_bytes()
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
        assert (tiny_run / "results/models/diffusion/model.pt").exists()
    finally:
        raw.write_bytes(backup)


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
