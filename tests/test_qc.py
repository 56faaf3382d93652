"""QC figures, thresholds, the failure message, exclusions and the report's QC table."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mrisr.preprocess import qc
from mrisr.io import MrisrError

THRESHOLDS = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())[
    "preprocess"]["qc"]
GOOD = {"dice": 0.96, "brain_ml": 1400.0, "correlation": 0.55}


def test_figures_of_identical_and_disjoint_masks():
    mask = np.zeros((10, 10, 10), bool)
    mask[2:8, 2:8, 2:8] = True
    rng = np.random.default_rng(0)
    image = rng.random(mask.shape)
    figures = qc.measure(mask, mask, 1234.0, image, 2 * image + 1)
    assert figures == pytest.approx({"dice": 1.0, "brain_ml": 1234.0, "correlation": 1.0})
    assert qc.dice(mask, ~mask) == 0
    assert qc.correlation_in(image, -image, mask) == pytest.approx(-1)


@pytest.mark.parametrize("change, figure", [
    ({"dice": 0.7}, "dice 0.700 <"),
    ({"brain_ml": 4400.0}, "brain_ml 4400 outside"),
    ({"brain_ml": 300.0}, "brain_ml 300 outside"),
    ({"correlation": 0.05}, "correlation 0.050 <"),
])
def test_a_figure_outside_its_threshold_stops_the_subject_in_one_line(change, figure):
    assert qc.failures(GOOD, THRESHOLDS) == []
    qc.check("S1", GOOD, THRESHOLDS, "logs/preprocess/S1.qc.png")
    with pytest.raises(MrisrError) as error:
        qc.check("S1", {**GOOD, **change}, THRESHOLDS, "logs/preprocess/S1.qc.png")
    message = str(error.value)
    assert message.startswith("S1: preprocessing failed QC: ") and figure in message
    assert message.endswith("look at logs/preprocess/S1.qc.png") and "\n" not in message


def test_report_table_marks_failures_outliers_and_excluded_subjects(tmp_path):
    paths = []
    for index, dice in enumerate([0.95, 0.96, 0.955, 0.965, 0.958, 0.91]):
        path = tmp_path / f"s{index}.csv"
        qc.write_row({"subject": f"s{index}", "status": qc.PASSED, "orientation": "LIA", "skull_strip": "robex",
                      "dice": dice, "brain_ml": 1400 + index, "correlation": 0.6}, str(path))
        paths.append(str(path))
    failed = tmp_path / "bad.qc.csv"
    qc.write_row({"subject": "bad", "status": qc.FAILED, "orientation": "RAS", "skull_strip": "none",
                  "dice": 0.5, "brain_ml": 4000, "correlation": 0.1}, str(failed))
    split = pd.DataFrame({"subject": [f"s{i}" for i in range(6)], "role": ["train"] * 5 + ["test"]})
    shown = qc.table(paths, {"bad": str(failed), "never": str(tmp_path / "missing.csv")}, split, THRESHOLDS)
    assert list(shown["subject"]) == [f"s{i}" for i in range(6)] + ["bad", "never"]
    dice = dict(zip(shown["subject"], shown[qc.FIGURES["dice"]]))
    assert dice["s5"] == "0.910 *" and dice["s0"] == "0.950"  # an outlier of the cohort, within the threshold
    assert dice["bad"].startswith("0.500 !") and dice["never"] == "–"
    status = dict(zip(shown["subject"], shown["QC"]))
    assert status["s0"] == "pass" and status["bad"] == "excluded (QC FAIL)" and status["never"] == "excluded (QC none)"
