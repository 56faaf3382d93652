"""A user's own scan through `mrisr super-resolve`: every input of the bad-input matrix gives a correct result or one
line, and nothing half-written.

The model is a real model file of the tiny test config whose network is untrained (its zero-initialised output layer
adds nothing to the interpolation), so these tests check the path a scan takes, not the model's quality.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from helpers import rotation, stored_as, tiny_config
from mrisr.cli import main as mrisr
from mrisr.data.embedded import mni152_path, robex_head_path
from mrisr.grids import lr_affine_for
from mrisr.inference.scan import check_scan, turned_factor
from mrisr.io import MrisrError, load_volume
from mrisr.model.modelfile import read_model_file, save_model
from mrisr.model.spec import degradation_of, model_spec
from mrisr.pairs.degrade import degrade

HR_MM = 3.0  # the tiny model's output grid here; it takes 6 mm scans (small volumes: quick tests)
LR_MM = 2 * HR_MM
DEGRADATION = degradation_of(tiny_config())


def model_file(folder, config: dict) -> str:
    """A model file of the tiny test config with ``config`` merged in, untrained, making HR_MM voxels."""
    spec = model_spec(tiny_config(config), "diffusion3d", [HR_MM] * 3, [], {})
    save_model(folder / "model.pt", spec, spec.build_network())
    return str(folder / "model.pt")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return model_file(tmp_path_factory.mktemp("model"), {})


@pytest.fixture(scope="module")
def thick_model(tmp_path_factory):
    """A thick-slice model: factor [1, 1, 3], so it takes 3 x 3 x 9 mm scans, thick along z."""
    return model_file(tmp_path_factory.mktemp("thick_model"), {"pairs": {"factor": [1, 1, 3]}})


def low_resolution(image: nib.Nifti1Image, units: float = 400.0, voxel_mm=LR_MM) -> nib.Nifti1Image:
    """``image`` in scan-like units, degraded from its own voxel size to ``voxel_mm`` (per axis, or one number) with
    its affine kept consistent."""
    volume = image.get_fdata(dtype=np.float32)
    volume = volume / np.percentile(volume[volume > 0], 99) * units
    factor = np.asarray(voxel_mm) / np.asarray(image.header.get_zooms()[:3])
    lr = degrade(volume, factor, DEGRADATION)
    return nib.Nifti1Image(lr, lr_affine_for(image.affine, volume.shape, lr.shape))


@pytest.fixture(scope="module")
def brain(tmp_path_factory) -> nib.Nifti1Image:
    """The MNI152 template (a skull-stripped brain with an exactly zero background) at LR_MM."""
    return low_resolution(load_volume(mni152_path()))


def run(tmp_path, image: nib.Nifti1Image | str, model: str, *options: str) -> tuple[int, str, str]:
    """``mrisr super-resolve`` on ``image``; returns the exit code, the error line and the output's path."""
    if isinstance(image, nib.Nifti1Image):
        nib.save(image, tmp_path / "scan.nii.gz")
        image = str(tmp_path / "scan.nii.gz")
    output = str(tmp_path / "sr.nii.gz")
    result = subprocess.run([sys.executable, "-m", "mrisr.cli", "super-resolve", image, "--model", model,
                             "--output", output, "--threads", "1", *options], capture_output=True, text=True,
                            timeout=600)
    errors = [line for line in result.stderr.splitlines() if line.startswith("mrisr: error:")]
    return result.returncode, errors[0] if errors else "", output


def brain_voxels(tmp_path, image, model, *options) -> tuple[nib.Nifti1Image, np.ndarray]:
    """The estimate and the brain mask of ``image`` (one pass: with an untrained network every sampler setting
    gives the same estimate, the interpolation made consistent with the scan)."""
    code, error, output = run(tmp_path, image, model, "--mask", str(tmp_path / "mask.nii.gz"), *(options or ["--fast"]))
    assert code == 0, error
    return nib.load(output), nib.load(tmp_path / "mask.nii.gz").get_fdata() > 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory, brain, model):
    """The result for the clean brain with the model's own sampler: what every other input must give."""
    folder = tmp_path_factory.mktemp("reference")
    return (*brain_voxels(folder, brain, model, "--uncertainty", str(folder / "sd.nii.gz")), folder)


@pytest.mark.slow  # samples a whole brain
def test_a_stripped_brain_gives_its_estimate_on_its_own_grid_with_a_sidecar(reference, brain):
    estimate, mask, folder = reference
    assert estimate.shape == tuple(2 * n for n in brain.shape)
    np.testing.assert_allclose(estimate.header.get_zooms()[:3], np.array(brain.header.get_zooms()[:3]) / 2, rtol=1e-4)
    corner = [-0.5, -0.5, -0.5, 1]  # grids are edge-aligned: the first voxels share their outer corner
    np.testing.assert_allclose(estimate.affine @ corner, brain.affine @ corner, atol=1e-4)
    values = estimate.get_fdata()
    assert 200 < np.percentile(values[mask], 99) < 600  # the scan's units, not [0, 1]
    assert mask.mean() > 0.2 and not mask[0, 0, 0]
    sidecar = json.loads((folder / "sr.json").read_text())
    assert sidecar["skull_strip"] == "none" and sidecar["lr_psnr"] >= sidecar["lr_psnr_cubic"]
    assert sidecar["correlation"] > 0.98 and sidecar["provenance"]["git_commit"]
    assert nib.load(folder / "sd.nii.gz").shape == estimate.shape


@pytest.mark.slow  # samples a whole brain
@pytest.mark.parametrize("background", ["tiny_positive", "rician_noise"])
def test_a_resampled_or_noisy_background_gives_the_same_brain(reference, brain, model, tmp_path, background):
    volume = brain.get_fdata(dtype=np.float32)
    rng = np.random.default_rng(0)
    if background == "tiny_positive":  # what resampling leaves where the scan was zero
        volume = volume + 1e-30
    else:  # Rician noise at 3 % of the white-matter level
        sd = 0.03 * 300
        volume = np.hypot(volume + rng.normal(0, sd, volume.shape), rng.normal(0, sd, volume.shape))
    estimate, mask = brain_voxels(tmp_path, nib.Nifti1Image(volume.astype(np.float32), brain.affine), model)
    expected, expected_mask, _ = reference
    both = mask & expected_mask
    assert both.sum() > 0.9 * expected_mask.sum()
    correlation = np.corrcoef(estimate.get_fdata()[both], expected.get_fdata()[both])[0, 1]
    assert correlation > (0.999 if background == "tiny_positive" else 0.95), correlation


@pytest.mark.slow  # samples a whole brain
@pytest.mark.parametrize("storage", ["LIA", "LPS", "oblique"])
def test_any_storage_order_gives_the_same_estimate_in_that_order(reference, brain, model, tmp_path, storage):
    if storage == "oblique":
        scan = nib.Nifti1Image(brain.get_fdata(dtype=np.float32), rotation(15, 0) @ brain.affine)
    else:
        scan = stored_as(brain, storage)
    estimate, _ = brain_voxels(tmp_path, scan, model)
    assert nib.aff2axcodes(estimate.affine) == nib.aff2axcodes(scan.affine)
    expected, _, _ = reference
    # N4 sees each storage's affine: a few voxels differ by a rounding (at most 0.3 % measured)
    if storage == "oblique":  # the same voxels; the affine carries the rotation
        np.testing.assert_allclose(estimate.affine, rotation(15, 0) @ expected.affine, atol=1e-4)
        np.testing.assert_allclose(estimate.get_fdata(), expected.get_fdata(), rtol=1e-2, atol=1e-2)
    else:
        back = nib.as_closest_canonical(estimate)
        np.testing.assert_allclose(back.affine, expected.affine, atol=1e-4)
        np.testing.assert_allclose(back.get_fdata(), expected.get_fdata(), rtol=1e-2, atol=1e-2)


def bad_inputs(brain: nib.Nifti1Image) -> dict[str, tuple[nib.Nifti1Image, str]]:
    volume = brain.get_fdata(dtype=np.float32)
    huge = np.zeros((120, 60, 60), np.float32)
    huge[:volume.shape[0], :volume.shape[1], :volume.shape[2]] = volume
    nan = volume.copy()
    nan[10, 10, 10] = np.nan
    one_mm = nib.Nifti1Image(volume, np.diag([1.0, 1.0, 1.0, 1.0]))
    return {
        "4d": (nib.Nifti1Image(np.stack([volume, volume], -1), brain.affine), "expected a 3D volume"),
        "2d image": (nib.Nifti1Image(volume[:, :, 10], brain.affine), "expected a 3D volume"),
        "one slice": (nib.Nifti1Image(volume[:, :, 10:11], brain.affine), "a slice or a thin slab"),
        "thin slab": (nib.Nifti1Image(volume[:, :, 10:13], brain.affine), "a slice or a thin slab"),
        "nan": (nib.Nifti1Image(nan, brain.affine), "contains NaN"),
        "constant": (nib.Nifti1Image(np.full(volume.shape, 7.0, np.float32), brain.affine), "constant image"),
        "z-scored": (nib.Nifti1Image((volume - volume.mean()) / volume.std(), brain.affine), "z-scored"),
        "other contrast": (nib.Nifti1Image(np.where(volume > 20, 500 - volume, 0).astype(np.float32), brain.affine),
                           "not the T1w contrast"),
        "voxel size": (one_mm, "voxel size [1.0, 1.0, 1.0] mm, but this model turns [6.0, 6.0, 6.0] mm scans"),
        "whole body": (nib.Nifti1Image(huge, brain.affine), "larger than a head"),
    }


@pytest.mark.parametrize("case", ["4d", "2d image", "one slice", "thin slab", "nan", "constant", "z-scored",
                                  "other contrast", "voxel size", "whole body"])
def test_bad_input_gets_one_line_and_no_output(brain, model, tmp_path, case):
    image, expected = bad_inputs(brain)[case]
    code, error, output = run(tmp_path, image, model)
    assert code == 1 and expected in error, error
    assert not list(tmp_path.glob("sr*"))


def test_a_missing_file_and_a_foreign_model_get_one_line(brain, model, tmp_path):
    code, error, _ = run(tmp_path, str(tmp_path / "nowhere.nii.gz"), model)
    assert code == 1 and "nowhere.nii.gz: file not found" in error
    (tmp_path / "foreign.pt").write_bytes(b"not a model")
    code, error, _ = run(tmp_path, brain, str(tmp_path / "foreign.pt"))
    assert code == 1 and "not an mrisr model file" in error


@pytest.mark.slow  # samples a whole brain
def test_an_estimate_that_does_not_reproduce_the_scan_is_not_written(brain, model, tmp_path, monkeypatch):
    # A model gone wrong (its estimate flat), as a wrong normalisation made the first version's outputs.
    import mrisr.inference.scan as scan
    from mrisr.inference.sampling import Sampled

    def flat(volume, shape, *args, **kwargs):
        return Sampled(np.full(shape, 0.5, np.float32), *[np.zeros(shape, np.float32)] * 2)

    monkeypatch.setattr(scan, "super_resolve", flat)
    nib.save(brain, tmp_path / "scan.nii.gz")
    code = mrisr(["super-resolve", str(tmp_path / "scan.nii.gz"), "--model", model, "--output",
                  str(tmp_path / "sr.nii.gz"), "--threads", "1"])
    assert code == 1 and not (tmp_path / "sr.nii.gz").exists() and not (tmp_path / "sr.json").exists()


@pytest.mark.slow  # samples a whole brain
def test_fast_preview_and_its_refusal_to_make_an_uncertainty_map(brain, model, tmp_path):
    code, error, output = run(tmp_path, brain, model, "--fast")
    assert code == 0, error
    code, error, _ = run(tmp_path, brain, model, "--fast", "--uncertainty", str(tmp_path / "sd.nii.gz"))
    assert code == 1 and "no uncertainty map" in error


@pytest.mark.slow
def test_a_head_is_skull_stripped_and_gives_a_brain_estimate(model, tmp_path):
    # The atlas mask (ROBEX's reference head registered to the scan): ROBEX itself runs in test_skullstrip.py
    # and test_preprocess.py, and auto's choice of it for a head in test_skullstrip.py.
    head = low_resolution(load_volume(robex_head_path()))
    estimate, mask = brain_voxels(tmp_path, head, model, "--fast", "--skull-strip", "atlas")
    mask_ml = mask.sum() * np.prod(estimate.header.get_zooms()[:3]) / 1000
    assert 900 < mask_ml < 2000, mask_ml  # a brain, not the head (3.3 l)
    assert estimate.shape == tuple(2 * n for n in head.shape)


@pytest.mark.parametrize("voxel_mm", [[9.0, 3.0, 3.0], [3.0, 9.0, 3.0], [3.0, 3.0, 9.0]])
@pytest.mark.parametrize("storage", ["RAS", "PIL"])
def test_a_thick_slice_scan_fits_a_thick_slice_model_along_any_axis_in_any_storage(
        model, thick_model, voxel_mm, storage):
    volume = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32)
    scan = stored_as(nib.Nifti1Image(volume, np.diag([*voxel_mm, 1.0])), storage)
    spec, _ = read_model_file(thick_model)
    check_scan(scan, "scan.nii.gz", spec)
    factor, input_mm = turned_factor(spec, scan)
    assert factor == [3.0 if mm == 9 else 1.0 for mm in voxel_mm] and input_mm == voxel_mm  # the RAS voxel order
    # An isotropic model is never turned.
    assert turned_factor(read_model_file(model)[0], scan)[0] == [2.0, 2.0, 2.0]


@pytest.mark.parametrize("voxel_mm", [[2.0, 2.0, 2.0], [9.0, 9.0, 3.0]])
def test_a_voxel_size_no_order_of_the_models_factor_fits_gets_one_line(thick_model, voxel_mm):
    spec, _ = read_model_file(thick_model)
    volume = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32)
    with pytest.raises(MrisrError) as error:
        check_scan(nib.Nifti1Image(volume, np.diag([*voxel_mm, 1.0])), "scan.nii.gz", spec)
    assert str(error.value) == (f"scan.nii.gz: voxel size {voxel_mm} mm, but this model turns [3.0, 3.0, 9.0] mm "
                                "scans (in any order of its axes) into [3.0, 3.0, 3.0] mm (factor [1.0, 1.0, 3.0]); "
                                "use a model trained for this factor, or skip this check")


def middle(image: nib.Nifti1Image, shape: tuple[int, int, int], margin: int = 2) -> nib.Nifti1Image:
    """The box of ``shape`` voxels in the middle of ``image``, its outer ``margin`` voxels zeroed: a skull-stripped
    scan in miniature (its foreground closed within the box), quick to super-resolve."""
    start = [(n - s) // 2 for n, s in zip(image.shape, shape)]
    box = image.slicer[tuple(slice(a, a + s) for a, s in zip(start, shape))]
    volume = np.zeros(shape, np.float32)
    inner = tuple(slice(margin, s - margin) for s in shape)
    volume[inner] = box.get_fdata(dtype=np.float32)[inner]
    return nib.Nifti1Image(volume, box.affine)


@pytest.fixture(scope="module")
def scans_to_pick_for(brain) -> dict[str, nib.Nifti1Image]:
    """The middle of the MNI152 brain thick along x (9 x 3 x 3 mm, a sagittal acquisition), and at 6 mm."""
    return {"thick along x": middle(low_resolution(load_volume(mni152_path()), voxel_mm=[9, 3, 3]), (10, 20, 24)),
            "isotropic": middle(brain, (12, 10, 14))}


@pytest.mark.parametrize("case, storage, picked", [("thick along x", "RAS", "thick"), ("thick along x", "PIL", "thick"),
                                                   ("isotropic", "RAS", "isotropic")])
def test_of_two_models_a_scan_gets_the_one_whose_factor_fits_it_turned_onto_its_axes(
        case, storage, picked, scans_to_pick_for, model, thick_model, tmp_path, caplog):
    # PIL stores x along the last axis: in storage order the thick scan looks like the model's [3, 3, 9] mm.
    scan = stored_as(scans_to_pick_for[case], storage)
    nib.save(scan, tmp_path / "scan.nii.gz")
    models = {"isotropic": model, "thick": thick_model}
    with caplog.at_level(logging.INFO):
        code = mrisr(["super-resolve", str(tmp_path / "scan.nii.gz"), "--model", model, "--model", thick_model,
                      "--output", str(tmp_path / "sr.nii.gz"), "--fast", "--skull-strip", "none",
                      "--no-bias-correction", "--threads", "1"])
    assert code == 0
    assert [m for m in caplog.messages if "is nearest" in m][0].count(f"{models[picked]}, which takes") == 1
    sidecar = json.loads((tmp_path / "sr.json").read_text())
    assert sidecar["model"] == models[picked]
    assert sidecar["factor_ras"] == ([3.0, 1.0, 1.0] if picked == "thick" else [2.0, 2.0, 2.0])
    # Refined along the axes the scan is coarse along (only its thick one), in its own storage order: HR_MM voxels.
    estimate = nib.load(tmp_path / "sr.nii.gz")
    step = np.round(np.asarray(scan.header.get_zooms()[:3]) / HR_MM)
    assert estimate.shape == tuple(int(n * f) for n, f in zip(scan.shape, step))
    np.testing.assert_allclose(estimate.header.get_zooms()[:3], HR_MM, rtol=0.02)
    assert nib.aff2axcodes(estimate.affine) == nib.aff2axcodes(scan.affine)
