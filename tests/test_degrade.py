"""LR simulation: grid sizes, voxel sizes, affines (edge-aligned), interpolation back."""
import nibabel as nib
import numpy as np
import pytest

from mrisr.grids import factor_label, hr_grid_for, lr_affine_for, lr_shape_for, upsample, voxel_sizes
from mrisr.io import save_volume
from mrisr.pairs.degrade import back_project, degrade, lr_consistency, write_pair

SPLINE = {"operator": "spline", "order": 3, "antialias": True, "noise_std": 0.0}


def spline(order=3, antialias=True, noise_std=0.0):
    return {"operator": "spline", "order": order, "antialias": antialias, "noise_std": noise_std}


def voxel_centre(affine, index):
    return (np.asarray(affine) @ np.array([*index, 1.0]))[:3]


@pytest.mark.parametrize("factor", [2, [1, 1, 4], 1.875])
def test_lr_voxel_centres_are_the_centres_of_their_hr_blocks(factor):
    hr_affine = np.array([[-0.7, 0, 0, 90], [0, 0.7, 0, -120], [0, 0, 0.7, -70], [0, 0, 0, 1]])
    hr_shape = (60, 64, 48)
    lr_shape = lr_shape_for(hr_shape, factor)
    lr_affine = lr_affine_for(hr_affine, hr_shape, lr_shape)
    true_factor = np.asarray(hr_shape) / lr_shape
    np.testing.assert_allclose(voxel_sizes(lr_affine), 0.7 * true_factor)
    # First LR voxel: the mean of the HR voxel centres of its block.
    block = np.stack([voxel_centre(hr_affine, i) for i in np.ndindex(*np.ceil(true_factor).astype(int))
                      if np.all(np.asarray(i) <= true_factor - 1)])
    if np.allclose(true_factor, np.round(true_factor)):
        np.testing.assert_allclose(voxel_centre(lr_affine, (0, 0, 0)), block.mean(axis=0))
    # Both grids cover the same field of view: their outer voxel edges coincide.
    for grid_affine, shape in ((hr_affine, hr_shape), (lr_affine, lr_shape)):
        corner = voxel_centre(grid_affine, (-0.5, -0.5, -0.5))
        np.testing.assert_allclose(corner, voxel_centre(hr_affine, (-0.5, -0.5, -0.5)), atol=1e-9)
    shape_back, affine_back = hr_grid_for(lr_affine, lr_shape, true_factor)
    assert shape_back == hr_shape
    np.testing.assert_allclose(affine_back, hr_affine, atol=1e-9)


def test_degrade_shapes_and_anisotropy():
    volume = np.random.default_rng(0).random((32, 32, 32)).astype(np.float32)
    for degradation in (SPLINE, {"operator": "block", "noise_std": 0.0}, {"operator": "kspace", "noise_std": 0.0}):
        assert degrade(volume, 2, degradation).shape == (16, 16, 16)
        assert degrade(volume, [1, 1, 4], degradation).shape == (32, 32, 8)
        assert degrade(volume, 2, degradation).dtype == np.float32


def test_linear_ramp_survives_downsampling_and_trilinear_upsampling():
    ramp = np.broadcast_to(np.arange(32, dtype=np.float32)[:, None, None], (32, 8, 8)).copy()
    lr = degrade(ramp, 2, spline(order=1, antialias=False))
    np.testing.assert_allclose(lr[:, 0, 0], np.arange(16) * 2 + 0.5)  # LR centres sit between HR voxels
    np.testing.assert_allclose(upsample(lr, ramp.shape, "trilinear")[1:-1], ramp[1:-1], atol=1e-5)


def test_rician_noise_is_seeded_and_positive():
    volume = np.zeros((16, 16, 16), np.float32)
    first = degrade(volume, 2, spline(noise_std=0.05), rng=np.random.default_rng(3))
    second = degrade(volume, 2, spline(noise_std=0.05), rng=np.random.default_rng(3))
    np.testing.assert_array_equal(first, second)
    assert first.min() >= 0 and 0.03 < first.mean() < 0.1  # Rayleigh mean = sigma * sqrt(pi / 2)


def test_unknown_interpolation_is_rejected():
    with pytest.raises(ValueError, match="unknown interpolation"):
        upsample(np.zeros((4, 4, 4)), (8, 8, 8), "sinc")


def test_write_pair_writes_lr_on_its_own_grid(tmp_path):
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    save_volume(np.random.default_rng(0).random((32, 32, 16)), affine, tmp_path / "brain.nii.gz")
    write_pair(str(tmp_path / "brain.nii.gz"), str(tmp_path / "lr.nii.gz"), str(tmp_path / "pair.json"),
               factor=[2, 2, 4], name="spline", degradation=SPLINE, seed=0)
    lr = nib.load(tmp_path / "lr.nii.gz")
    assert lr.shape == (16, 16, 4)
    np.testing.assert_allclose(lr.header.get_zooms(), (2, 2, 4))
    np.testing.assert_allclose(lr.affine[:3, 3], [0.5, 0.5, 1.5])


@pytest.mark.parametrize("factor", [2, [1, 1, 3]])
def test_back_projection_makes_an_estimate_consistent_with_the_lr(factor):
    from scipy.ndimage import gaussian_filter

    hr = gaussian_filter(np.random.default_rng(4).random((32, 32, 30)), 1.2).astype(np.float32)
    lr = degrade(hr, factor, SPLINE)
    cubic = upsample(lr, hr.shape, "cubic")
    projected = back_project(cubic, lr, factor, SPLINE, iterations=3)
    assert lr_consistency(projected, lr, factor, SPLINE) > lr_consistency(cubic, lr, factor, SPLINE) + 10
    assert np.abs(projected - hr).mean() < np.abs(cubic - hr).mean()  # it recovers detail, not just the LR
    with pytest.raises(ValueError, match="does not degrade"):
        back_project(cubic[:-2], lr, factor, SPLINE, 1)


def test_factor_labels():
    assert factor_label(2) == "2" and factor_label([2, 2, 2]) == "2" and factor_label(1.5) == "1.5"
    assert factor_label([2, 2, 4]) == "2x2x4"
