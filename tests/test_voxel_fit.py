"""Which model fits a scan's voxel size, turned onto its axes, and which scans the apply stage gives each model."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from helpers import stored_as
from mrisr.inference.voxel_fit import apply_jobs, fits, nearest_axis_order, nearest_model, voxel_size_distance

# An isotropic factor-2 model and a thick-slice [1, 1, 3] model, both making 3 mm voxels: the scans they take.
INPUTS = {"isotropic": [6.0, 6.0, 6.0], "thick": [3.0, 3.0, 9.0]}


def test_the_distance_counts_a_step_up_and_the_same_step_down_alike():
    assert voxel_size_distance([3, 3, 3], [3, 3, 3]) == 0
    assert voxel_size_distance([3, 3, 6], [3, 3, 3]) == pytest.approx(voxel_size_distance([3, 3, 3], [3, 3, 6]))
    assert voxel_size_distance([3, 3, 6], [3, 3, 3]) == pytest.approx(np.log(2))


def test_a_thick_slice_model_is_turned_onto_the_scans_thick_axis_and_an_isotropic_one_never():
    assert nearest_axis_order([3, 3, 9], [3, 3, 9]) == ((0, 1, 2), 0)
    assert nearest_axis_order([3, 3, 9], [9, 3, 3])[0] == (2, 1, 0)  # x thick: x and z swap
    assert nearest_axis_order([3, 3, 9], [3, 9, 3])[0] == (0, 2, 1)  # y thick: y and z swap
    assert nearest_axis_order([6, 6, 6], [9, 3, 3])[0] == (0, 1, 2)
    assert fits([9, 3, 3], [8.5, 3.2, 3]) and not fits([3, 3, 9], [9, 9, 3]) and not fits([6, 6, 6], [3, 3, 3])


@pytest.mark.parametrize("scan_mm, picked", [([6, 6, 6], "isotropic"), ([5.5, 6, 6.5], "isotropic"),
                                             ([3, 3, 9], "thick"), ([9, 3, 3], "thick"), ([3, 8.5, 3.2], "thick")])
def test_of_an_isotropic_and_a_thick_slice_model_each_scan_gets_the_one_that_fits_it(scan_mm, picked):
    name, why = nearest_model(INPUTS, scan_mm)
    assert name == picked and "\n" not in why
    other = next(model for model in INPUTS if model != picked)
    assert why.startswith(f"voxel size {' x '.join(f'{mm:.3g}' for mm in scan_mm)} mm (RAS order): {picked}, which "
                          "takes") and f"; {other} " in why
    assert ("turned to" in why) == (picked == "thick" and scan_mm[2] != 9)


def scan_file(folder, name: str, voxel_mm: list[float], storage: str = "RAS") -> str:
    image = stored_as(nib.Nifti1Image(np.zeros((10, 10, 10), np.float32), np.diag([*voxel_mm, 1.0])), storage)
    nib.save(image, folder / f"{name}.nii.gz")
    return str(folder / f"{name}.nii.gz")


def test_the_apply_stage_runs_every_model_on_every_scan_or_each_scan_by_the_model_that_fits_it(tmp_path):
    # The sagittal scan is stored with x last: in its storage order it looks axial (3 x 3 x 9 mm) but its thick
    # axis is x, which the header's RAS order says.
    scans = {"axial": scan_file(tmp_path, "axial", [3, 3, 9]), "iso": scan_file(tmp_path, "iso", [6, 6, 6]),
             "sagittal": scan_file(tmp_path, "sagittal", [9, 3, 3], storage="PIL")}
    every = apply_jobs(scans, list(INPUTS), None)
    assert list(every) == [(model, scan) for model in INPUTS for scan in scans] and set(every.values()) == {""}
    picked = apply_jobs(scans, list(INPUTS), INPUTS.get)
    assert list(picked) == [("isotropic", "iso"), ("thick", "axial"), ("thick", "sagittal")]
    assert "(turned to 9 x 3 x 3)" in picked["thick", "sagittal"]
