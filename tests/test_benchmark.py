"""The quality benchmark: the workflow per fold, every model and baseline scored on held-out subjects only."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from helpers import ONE_MODEL_CONFIG, REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from quality import folds  # noqa: E402

BASELINES = {"nearest", "trilinear", "cubic", "back_projection"}


@pytest.mark.workflow
def test_smoke_benchmark_scores_every_model_and_variant(tmp_path):
    # The core suite, scored from the pairs' own degradation; the tiny workflow run (tests/test_workflow.py)
    # covers every model kind and degradation.
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "quality.py"), "--smoke", "--suite", "core",
                             "--config", str(ONE_MODEL_CONFIG), "--workdir", str(tmp_path)],
                            capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "psnr_brain_vs_back_projection" in result.stdout  # the table
    record = json.loads((tmp_path / "quality.json").read_text())
    methods = {(row["factor"], row["method"]) for row in record["per_subject"]}
    x2 = {"diffusion3d", "regression3d", "diffusion3d_mean", "diffusion3d_unmirrored", "diffusion3d_free",
          "regression3d_free", *BASELINES}
    assert methods == {("2", m) for m in x2}
    for row in record["per_subject"]:
        assert math.isfinite(row["psnr_brain"]) and 0 < row["ssim_brain"] <= 1, row
    split = record["folds"]["config"]
    assert {row["subject"] for row in record["per_subject"]} == set(split["test"])
    assert not set(split["test"]) & set(split["train"] + split["val"])
    assert (tmp_path / "report_config.html").is_file()
    assert record["training_seconds_last_fold"]["diffusion3d"] > 0


def test_leave_one_real_brain_out_holds_out_each_person_with_their_copies():
    config = {"data": {"source": "embedded"}, "split": {
        "train": ["mni152", "mni152def01", "s1"], "val": ["mni152def02"], "test": ["robex", "robexdef01"]}}
    splits = folds(config, "loro")
    assert splits == {
        "without_robex": {"train": ["mni152", "mni152def01", "s1"], "val": ["mni152def02"],
                          "test": ["robex", "robexdef01"]},
        "without_s1": {"train": ["mni152", "mni152def01", "robex", "robexdef01"], "val": ["mni152def02"],
                       "test": ["s1"]},
    }
