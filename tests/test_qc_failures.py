"""A scan that fails preprocessing QC: one line and no output alone, and in a workflow run with --keep-going the
other subjects go on and the report lists the one excluded afterwards."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import snakemake
from helpers import ONE_MODEL_CONFIG, TINY_CONFIG, load_config, preprocess_in, stored_as
from mrisr.data.embedded import mni152_path, robex_head_path
from mrisr.io import load_volume, save_volume
from mrisr.preprocess import qc
from mrisr.preprocess.skullstrip import foreground

pytestmark = pytest.mark.slow

SETTINGS = load_config()["preprocess"]


def face_only(path: Path) -> None:
    """The ROBEX head's face: its front 70 mm, everything else (and the background) set to zero."""
    head = stored_as(load_volume(robex_head_path()), "RAS")
    volume = head.get_fdata(dtype=np.float32)
    region = foreground(volume)
    front = np.argwhere(region)[:, 1].max()
    volume = np.where(region, volume, 0)
    volume[:, : front - round(70 / 1.5), :] = 0
    save_volume(volume, head.affine, path)


def test_a_face_only_crop_fails_qc_in_one_line_and_writes_no_output(tmp_path):
    (tmp_path / "raw").mkdir()
    face_only(tmp_path / "raw" / "face.nii.gz")
    message = preprocess_in(str(tmp_path), "face", SETTINGS)
    qc_image = tmp_path / "logs" / "preprocess" / "face.qc.png"
    assert re.fullmatch(rf"face: preprocessing failed QC: dice 0\.\d+ < {SETTINGS['qc']['min_dice']}; .*"
                        rf"\(thresholds in preprocess\.qc\); look at {re.escape(str(qc_image))}", message)
    assert not list((tmp_path / "results" / "preproc" / "face").iterdir())  # no output, no scratch folder
    assert qc_image.stat().st_size > 10_000
    row = pd.read_csv(tmp_path / "logs" / "preprocess" / "face.qc.csv").iloc[0]
    assert row["status"] == qc.FAILED and "dice" in row["failed"] and row["skull_strip"] == "none"


@pytest.mark.workflow
def test_keep_going_finishes_the_others_and_the_report_lists_the_excluded_subject(tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    template = load_volume(mni152_path())
    save_volume(np.asarray(template.dataobj), template.affine, scans / "mnia.nii.gz")
    lia = stored_as(template, "LIA")
    save_volume(np.asarray(lia.dataobj), lia.affine, scans / "mnib.nii.gz")
    face_only(scans / "face.nii.gz")
    config = {"data": {"source": "local", "local": {"path": str(scans)}},
              "split": {"train": ["mnia", "face"], "val": [], "test": ["mnib"]},
              "preprocess": {"skull_strip": "auto", "qc": SETTINGS["qc"]}}  # the defaults, not tiny's
    layered = tmp_path / "local.yaml"
    layered.write_text(yaml.safe_dump(config))
    workdir = tmp_path / "run"
    workdir.mkdir()

    result = snakemake(workdir, "--configfile", str(TINY_CONFIG), str(ONE_MODEL_CONFIG), str(layered), "--keep-going",
                       check=False)
    assert result.returncode != 0
    log = (workdir / "logs" / "preprocess" / "face.log").read_text()
    assert "face: preprocessing failed QC: dice" in log and "Traceback" not in log
    assert (workdir / "logs" / "preprocess" / "face.qc.png").is_file()
    assert not (workdir / "results" / "preproc" / "face").exists() or not any(
        (workdir / "results" / "preproc" / "face").iterdir())
    for subject in ("mnia", "mnib"):
        assert (workdir / "results" / "preproc" / subject / "T1w_brain.nii.gz").is_file()

    config["preprocess"]["exclude"] = ["face"]
    layered.write_text(yaml.safe_dump(config))
    planned = snakemake(workdir, "--configfile", str(TINY_CONFIG), str(ONE_MODEL_CONFIG), str(layered),
                        "--dry-run").stdout
    stats = planned.split("Job stats:")[1].split("total")[0]
    assert "preprocess" not in stats and "train" in stats  # nobody else is preprocessed again
    snakemake(workdir, "--configfile", str(TINY_CONFIG), str(ONE_MODEL_CONFIG), str(layered))
    html = (workdir / "results" / "report" / "index.html").read_text()
    assert "Preprocessing QC" in html and "excluded (QC FAIL)" in html
    assert "Excluded with <code>preprocess.exclude</code>" in html
    split = pd.read_csv(workdir / "results" / "split.tsv", sep="\t")
    assert set(split["subject"]) == {"mnia", "mnib"} and set(split["kind"]) == {"real person"}
