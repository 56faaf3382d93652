"""`mrisr super-resolve`: any LR NIfTI in, SR out on the right grid; clear errors on a mismatch."""
from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

pytestmark = pytest.mark.workflow


def mrisr(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mrisr.cli", *args], capture_output=True, text=True, timeout=600)


def test_super_resolve_keeps_orientation_and_grid(tiny_run, tmp_path):
    lr = nib.load(tiny_run / "results/pairs/robex/x2/lr.nii.gz")
    # Flip an axis and scale intensities: a scan in another orientation and other units.
    flipped = nib.Nifti1Image(lr.get_fdata()[::-1] * 800, lr.affine @ np.array(
        [[-1, 0, 0, lr.shape[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))
    nib.save(flipped, tmp_path / "scan.nii.gz")
    result = mrisr("super-resolve", str(tmp_path / "scan.nii.gz"), "--model",
                   str(tiny_run / "results/models/diffusion3d/model.pt"), "--output", str(tmp_path / "sr.nii.gz"),
                   "--uncertainty", str(tmp_path / "sd.nii.gz"), "--steps", "2", "--samples", "2",
                   "--skull-strip", "none")  # the tiny run's 'brain' is a template-masked head cut to a 64 mm box
    assert result.returncode == 0, result.stderr
    sr, hr = nib.load(tmp_path / "sr.nii.gz"), nib.load(tiny_run / "results/preproc/robex/T1w_brain.nii.gz")
    assert sr.shape == hr.shape and nib.load(tmp_path / "sd.nii.gz").shape == hr.shape
    # The calibrated model's interval beside the output, its level in the sidecar and the NIfTI description; the
    # sampler asked for is not the one it was calibrated with, and the log says so.
    lower, upper = (nib.load(tmp_path / f"sr_{name}.nii.gz") for name in ("lower", "upper"))
    assert np.all(lower.get_fdata() <= sr.get_fdata() + 1e-3) and np.all(sr.get_fdata() <= upper.get_fdata() + 1e-3)
    assert "90 % interval" in upper.header["descrip"].tobytes().decode()
    assert json.loads((tmp_path / "sr.json").read_text())["uncertainty"]["level"] == 0.9
    assert "differ from those the model file was calibrated with" in result.stderr
    assert nib.aff2axcodes(sr.affine) == nib.aff2axcodes(flipped.affine)
    np.testing.assert_allclose(np.abs(np.diag(sr.affine))[:3], np.abs(np.diag(hr.affine))[:3])
    # Same field of view: the flipped SR is the HR-grid SR read backwards.
    world_first = sr.affine @ [0, 0, 0, 1]
    np.testing.assert_allclose(world_first, hr.affine @ [hr.shape[0] - 1, 0, 0, 1], atol=1e-6)
    assert 100 < sr.get_fdata().max() < 2000  # back in the input's units


def test_a_scan_at_the_wrong_resolution_is_refused(tiny_run, tmp_path):
    result = mrisr("super-resolve", str(tiny_run / "results/preproc/robex/T1w_brain.nii.gz"), "--model",
                   str(tiny_run / "results/models/diffusion3d/model.pt"), "--output", str(tmp_path / "sr.nii.gz"))
    assert result.returncode == 1
    assert "voxel size [2.0, 2.0, 2.0] mm, but this model turns [4.0, 4.0, 4.0] mm scans" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "sr.nii.gz").exists()


def test_a_4d_input_is_refused(tiny_run, tmp_path):
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 2), np.float32), np.eye(4)), tmp_path / "bold.nii.gz")
    result = mrisr("super-resolve", str(tmp_path / "bold.nii.gz"), "--model",
                   str(tiny_run / "results/models/diffusion3d/model.pt"), "--output", str(tmp_path / "sr.nii.gz"))
    assert result.returncode == 1 and "bold.nii.gz: expected a 3D volume" in result.stderr


def test_a_garbage_model_file_is_refused_with_one_line(tiny_run, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model at all")
    result = mrisr("super-resolve", str(tiny_run / "results/pairs/robex/x2/lr.nii.gz"), "--model", str(garbage),
                   "--output", str(tmp_path / "sr.nii.gz"))
    assert result.returncode == 1 and f"{garbage}: not an mrisr model file" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "sr.nii.gz").exists()


def test_sampler_defaults_come_from_the_model_file(tiny_run, tmp_path):
    result = mrisr("super-resolve", str(tiny_run / "results/pairs/robex/x2/lr.nii.gz"), "--model",
                   str(tiny_run / "results/models/diffusion3d/model.pt"), "--output", str(tmp_path / "sr.nii.gz"),
                   "--no-normalize", "--skull-strip", "none")
    assert result.returncode == 0, result.stderr
    assert "2 sample(s), 3 DDIM steps" in result.stderr  # tests/data/tiny.yaml's sampler, kept in the model file


def test_data_consistency_can_assume_another_degradation_and_the_check_uses_it(tiny_run, tmp_path):
    # tests/data/tiny.yaml also scores robex from a k-space-truncated LR, as a scanner would have made it.
    scan = tiny_run / "results/pairs/robex/x2/kspace/lr.nii.gz"
    output = tmp_path / "sr.nii.gz"
    result = mrisr("super-resolve", str(scan), "--model", str(tiny_run / "results/models/diffusion3d/model.pt"),
                   "--output", str(output), "--no-normalize", "--skull-strip", "none",
                   "--consistency-degradation", "kspace")
    assert result.returncode == 0, result.stderr
    sidecar = json.loads((tmp_path / "sr.json").read_text())
    assert sidecar["sampler"]["consistency_degradation"] == {"name": "kspace", "operator": "kspace", "noise_std": 0.0}
    # The check measured the estimate through the operator it was made consistent with.
    # (It reproduces the scan as acquired, not the brain-masked one the network sees: truncating k-space is global,
    # so a projection onto the masked scan rang the mask's edge through the box and was refused.)
    assert sidecar["lr_psnr"] > sidecar["lr_psnr_cubic"] + 2
    result = mrisr("super-resolve", str(scan), "--model", str(tiny_run / "results/models/diffusion3d/model.pt"),
                   "--output", str(tmp_path / "x.nii.gz"), "--consistency-degradation", "sinc")
    assert result.returncode == 2 and "invalid choice: 'sinc'" in result.stderr
