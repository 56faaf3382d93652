"""The quality benchmark end to end at smoke size: every method scored, finite, on held-out subjects only."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.workflow

METRICS = ["psnr_brain", "ssim_brain", "psnr_whole", "ssim_whole", "hf_error_brain"]
TRAINED = ["regression", "triplanar2d", "cascade_x4", "single_x4"]


@pytest.fixture(scope="module")
def smoke_benchmark(tmp_path_factory) -> dict:
    workdir = tmp_path_factory.mktemp("benchmark")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "quality.py"), "--smoke", "--threads", "1",
                             "--workdir", str(workdir)], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "PSNR brain" in result.stdout  # the table
    return json.loads((workdir / "quality.json").read_text())


def test_every_method_has_finite_metrics(smoke_benchmark):
    methods = smoke_benchmark["methods"]
    diffusion = [f"diffusion_ddim{s}_k{k}" for s in (2, 3) for k in (1, 2)]
    assert set(methods) == {"nearest", "trilinear", "cubic", "cubic_x4", *TRAINED, *diffusion}
    for name, numbers in methods.items():
        for metric in METRICS:
            assert math.isfinite(numbers[f"{metric}_mean"]), (name, metric)
        assert math.isfinite(numbers["psnr_brain_vs_baseline"]) and math.isfinite(numbers["ssim_brain_vs_baseline"])
        assert 0 < numbers["ssim_brain_mean"] <= 1
    for name in TRAINED + diffusion:
        assert methods[name]["train_seconds"] > 0 and methods[name]["sample_seconds_per_sample"] > 0, name
        assert methods[name]["train_peak_mb"] is not None, name
    assert methods["cubic"]["psnr_brain_vs_baseline"] == 0 and methods["cubic_x4"]["baseline"] == "cubic_x4"
    assert methods["cubic"]["psnr_brain_mean"] > methods["cubic_x4"]["psnr_brain_mean"]  # 4x is harder
    assert -1 <= methods["diffusion_ddim3_k2"]["uncertainty_error_corr"] <= 1


def test_test_subjects_never_reach_training(smoke_benchmark):
    split, trained_on = smoke_benchmark["split"], set(smoke_benchmark["trained_on"])
    assert set(split["train"]) <= trained_on
    assert split["test"] and not set(split["test"]) & trained_on
    assert {row["subject"] for row in smoke_benchmark["per_subject"]} == set(split["test"])


def test_record_names_the_budget_and_machine(smoke_benchmark):
    assert smoke_benchmark["budget"]["steps"] == smoke_benchmark["config"]["train"]["steps"]
    assert smoke_benchmark["machine"]["cpu_count"] >= 1 and smoke_benchmark["provenance"]["versions"]["torch"]


def test_augmentation_ablation_scores_held_out_subjects_against_cubic(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "augmentation.py"), "--config",
                             str(REPO / "tests/data/tiny.yaml"), "--steps", "2", "--variants", "sharpness,oracle",
                             "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    record = json.loads((tmp_path / "augmentation.json").read_text())
    test_subjects = record["split"]["test"]
    assert {(row["variant"], row["subject"]) for row in record["rows"]} == {
        (variant, subject) for variant in ("sharpness", "oracle") for subject in test_subjects}
    trained_on = {row["variant"]: row["trained_on"].split("+") for row in record["rows"]}
    assert not set(trained_on["sharpness"]) & set(test_subjects)
    assert trained_on["oracle"] == test_subjects[:1]
    assert all(math.isfinite(row["psnr_brain"]) and math.isfinite(row["psnr_brain_cubic"]) for row in record["rows"])
