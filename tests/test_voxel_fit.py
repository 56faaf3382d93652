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


def test_the_apply_report_says_why_each_scan_got_its_model_and_describes_only_models_with_scans(tmp_path):
    import json

    import matplotlib.pyplot as plt

    from mrisr.evaluation.report import build_apply_report

    jobs = [["isotropic", "iso", "voxel size 6 x 6 x 6 mm (RAS order): isotropic, which takes 6 x 6 x 6 mm scans"],
            ["thick", "sagittal", "voxel size 9 x 3 x 3 mm (RAS order): thick, which takes 3 x 3 x 9 mm scans"]]
    sidecars, panels = [], []
    for model, scan, _ in jobs:
        sidecars.append(tmp_path / f"{model}_{scan}.json")
        sidecars[-1].write_text(json.dumps({"input_voxel_mm": [6, 6, 6], "output_voxel_mm": [3, 3, 3],
                                            "skull_strip": "none", "skull_strip_evidence": "as set", "lr_psnr": 40.0,
                                            "lr_psnr_cubic": 38.0, "correlation": 0.99, "seconds": {"total": 1.0}}))
        panels.append(tmp_path / f"{model}_{scan}.png")
        plt.imsave(panels[-1], np.zeros((4, 4)))
    descriptions = [str(tmp_path / model / "dataset_description.json") for model in ("isotropic", "thick")]
    build_apply_report(sidecars, panels, jobs, {"pick_model": True},
                       {"created": "now", "git_commit": "abc", "versions": {"mrisr": "0"}},
                       str(tmp_path / "report.html"), descriptions)
    html = (tmp_path / "report.html").read_text()
    assert "why this model" in html and "which takes 3 x 3 x 9 mm scans" in html and html.count("<h2>") == 3
    assert json.loads((tmp_path / "thick" / "dataset_description.json").read_text())["Name"].endswith("(thick)")


@pytest.mark.parametrize("pick_model", [False, True])
def test_the_workflow_plans_each_scan_by_the_model_that_fits_it_only_when_asked(tmp_path, pick_model):
    import re

    import yaml

    from helpers import TINY_CONFIG
    from mrisr.workflow import run_workflow

    # The tiny run's diffusion3d takes 4 mm scans; a thick-slice model beside it takes 2 x 2 x 6 mm ones.
    for scan, voxel_mm, storage in (("01", [4, 4, 4], "RAS"), ("02", [6, 2, 2], "PIL")):
        (tmp_path / "bids" / f"sub-{scan}" / "anat").mkdir(parents=True)
        scan_file(tmp_path / "bids" / f"sub-{scan}" / "anat", f"sub-{scan}_T1w", voxel_mm, storage)
    (tmp_path / "apply.yaml").write_text(yaml.safe_dump({
        "models": {"thick": {"kind": "regression3d", "factor": [1, 1, 3]}},
        "apply": {"path": str(tmp_path / "bids"), "models": ["diffusion3d", "thick"], "pick_model": pick_model}}))
    result = run_workflow(tmp_path, "results/apply/report.html", "--dry-run", "--configfile", str(TINY_CONFIG),
                          str(tmp_path / "apply.yaml"), cores=1, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    planned = set(re.findall(r"results/apply/(\w+)/sub-(\w+)/anat/\S+_desc-sr_T1w\.nii\.gz", result.stdout))
    every = {(model, scan) for model in ("diffusion3d", "thick") for scan in ("01", "02")}
    assert planned == ({("diffusion3d", "01"), ("thick", "02")} if pick_model else every)
