"""The apply stage: a cohort of the user's own LR scans through the workflow, BIDS derivatives out, a failing scan
stopping alone."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import yaml

from conftest import snakemake
from helpers import TINY_CONFIG, stored_as

pytestmark = pytest.mark.workflow


@pytest.fixture
def cohort(tiny_run, tmp_path):
    """A BIDS dataset of LR scans: the tiny run's test LR in its own storage order and stored LIA, and one
    z-scored scan that must stop alone."""
    lr = nib.load(tiny_run / "results/pairs/robex/x2/lr.nii.gz")
    scans = {"01": lr, "02": stored_as(lr, "LIA"),
             "03": nib.Nifti1Image((lr.get_fdata() - lr.get_fdata().mean()) / lr.get_fdata().std(), lr.affine)}
    for label, image in scans.items():
        (tmp_path / "bids" / f"sub-{label}" / "anat").mkdir(parents=True)
        nib.save(image, tmp_path / "bids" / f"sub-{label}" / "anat" / f"sub-{label}_T1w.nii.gz")
    (tmp_path / "bids" / "dataset_description.json").write_text('{"Name": "cohort", "BIDSVersion": "1.9.0"}')
    return tmp_path


def apply_config(folder, **apply) -> str:
    # The tiny run's 'brains' are template-masked heads cut to a 64 mm box: their foreground is the brain.
    path = folder / "apply.yaml"
    path.write_text(yaml.safe_dump({"apply": {"path": str(folder / "bids"), "models": ["diffusion3d"],
                                              "skull_strip": "none", **apply}}))
    return str(path)


def derivative(run, scan: str, suffix: str):
    return run / f"results/apply/diffusion3d/sub-{scan}/anat/sub-{scan}_res-2mm_{suffix}"


def test_a_cohort_is_super_resolved_into_bids_derivatives_and_a_bad_scan_stops_alone(tiny_run, cohort):
    config = apply_config(cohort)
    result = snakemake(tiny_run, "--configfile", str(TINY_CONFIG), config, "--keep-going", check=False)
    assert result.returncode != 0  # sub-03 failed ...
    log = (tiny_run / "logs/apply/diffusion3d/03_res-2mm.log").read_text()
    assert "z-scored" in log and "Traceback" not in log
    assert not derivative(tiny_run, "03", "desc-sr_T1w.nii.gz").exists()
    for scan in ("01", "02"):  # ... the others went on
        for suffix in ("desc-sr_T1w.nii.gz", "desc-srsd_T1w.nii.gz", "desc-brain_mask.nii.gz", "desc-sr_T1w.json",
                       "desc-srscale_T1w.nii.gz", "desc-srlower_T1w.nii.gz", "desc-srupper_T1w.nii.gz"):
            assert derivative(tiny_run, scan, suffix).is_file(), (scan, suffix)
    first, second = (nib.load(derivative(tiny_run, scan, "desc-sr_T1w.nii.gz")) for scan in ("01", "02"))
    assert first.shape == (32, 32, 32) and nib.aff2axcodes(second.affine) == ("L", "I", "A")
    np.testing.assert_allclose(nib.as_closest_canonical(second).get_fdata(),
                               nib.as_closest_canonical(first).get_fdata(), rtol=1e-3, atol=1e-3)
    sidecar = json.loads(derivative(tiny_run, "01", "desc-sr_T1w.json").read_text())
    assert sidecar["model_kind"] == "diffusion3d" and sidecar["lr_psnr"] >= sidecar["lr_psnr_cubic"]
    # The calibrated interval, in the scan's units, at the level the sidecar states.
    assert sidecar["uncertainty"]["level"] == 0.9 and "90 % interval" in sidecar["uncertainty"]["meaning"]
    estimate, lower, upper = (nib.load(derivative(tiny_run, "01", f"desc-{name}_T1w.nii.gz")).get_fdata()
                              for name in ("sr", "srlower", "srupper"))
    assert np.all(lower <= estimate + 1e-4) and np.all(estimate <= upper + 1e-4) and (upper > lower).any()

    snakemake(tiny_run, "--configfile", str(TINY_CONFIG), apply_config(cohort, exclude=["03"]))
    html = (tiny_run / "results/apply/report.html").read_text()
    assert "Your scans, super-resolved" in html and html.count("<h2>") == 3  # two scans and the configuration
    description = json.loads((tiny_run / "results/apply/diffusion3d/dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    # The evaluation of the test subjects is untouched by the apply stage.
    assert "Nothing to be done" in snakemake(tiny_run, "--configfile", str(TINY_CONFIG), "--dry-run").stdout


def test_a_cascade_cannot_be_applied_and_says_so(tiny_run, cohort):
    result = snakemake(tiny_run, "--configfile", str(TINY_CONFIG), apply_config(cohort, models=["cascade"]),
                       "--dry-run", check=False)
    assert result.returncode != 0 and "apply.models: cascade is a cascade" in result.stderr
