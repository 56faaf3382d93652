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


BLOCK = {"operator": "block", "noise_std": 0.0}
KSPACE = {"operator": "kspace", "noise_std": 0.0}


def smooth_periodic(shape=(32, 32, 32), sigma=3.0, seed=0):
    """Smooth noise in [0, 1] that wraps around (k-space truncation sees the volume as periodic)."""
    from scipy.ndimage import gaussian_filter

    volume = gaussian_filter(np.random.default_rng(seed).random(shape), sigma, mode="wrap")
    return ((volume - volume.min()) / (volume.max() - volume.min())).astype(np.float32)


@pytest.mark.parametrize("degradation", [BLOCK, KSPACE])
@pytest.mark.parametrize("factor", [2, [1, 1.5, 4], 3])
def test_block_and_kspace_keep_a_constant(degradation, factor):
    constant = np.full((24, 18, 16), 0.7, np.float32)
    lr = degrade(constant, factor, degradation)
    assert lr.shape == lr_shape_for(constant.shape, factor)
    np.testing.assert_allclose(lr, 0.7, atol=1e-6)


def test_block_average_is_the_mean_of_each_block():
    volume = np.random.default_rng(1).random((8, 12, 16)).astype(np.float32)
    expected = volume.reshape(4, 2, 3, 4, 4, 4).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(degrade(volume, [2, 4, 4], BLOCK), expected, rtol=1e-5)


def test_a_fractional_block_counts_the_cut_voxels_by_their_share():
    row = np.arange(3, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)  # 0, 1, 2 along axis 0
    lr = degrade(row, [1.5, 1, 1], BLOCK)  # two LR voxels over [0, 1.5) and [1.5, 3)
    np.testing.assert_allclose(lr[:, 0, 0], [(0 + 0.5 * 1) / 1.5, (0.5 * 1 + 2) / 1.5], rtol=1e-6)


def test_kspace_lr_sits_on_the_lr_voxel_centres():
    """Without the half-block phase shift, cropping k-space samples HR index f j, not the centre f j + (f - 1) / 2."""
    from scipy.ndimage import shift

    hr = smooth_periodic()
    kspace, block = degrade(hr, 2, KSPACE), degrade(hr, 2, BLOCK)
    assert np.abs(kspace - block).max() < 0.02  # a smooth volume: both are close to its local mean
    for offset in (-0.5, 0.5):  # the LR of the HR half a voxel off, which an unshifted crop would give
        off = degrade(shift(hr, offset, order=3, mode="grid-wrap"), 2, BLOCK)
        assert np.abs(kspace - off).mean() > 5 * np.abs(kspace - block).mean()
    # Its cubic interpolation lines up with the HR: closer than the same moved by one HR voxel either way.
    cubic = upsample(kspace, hr.shape, "cubic")
    inner = (slice(4, -4),) * 3
    errors = {step: np.mean((np.roll(cubic, step, axis=0)[inner] - hr[inner]) ** 2) for step in (-1, 0, 1)}
    assert errors[0] < 0.2 * min(errors[-1], errors[1])


def test_kspace_truncation_keeps_the_low_frequencies_and_removes_the_high_ones():
    grid = np.arange(32)
    slow = np.cos(2 * np.pi * 2 * grid / 32)  # 2 cycles: under the LR's Nyquist (8 cycles at 16 voxels)
    fast = np.cos(2 * np.pi * 12 * grid / 32)  # 12 cycles: above it
    volume = (1.5 + slow + 0.3 * fast)[:, None, None] * np.ones((1, 4, 4))
    lr = degrade(volume.astype(np.float32), [2, 1, 1], KSPACE)[:, 0, 0]
    lr_centres = 2 * np.arange(16) + 0.5
    np.testing.assert_allclose(lr, 1.5 + np.cos(2 * np.pi * 2 * lr_centres / 32), atol=1e-5)


@pytest.mark.parametrize("degradation", [BLOCK, KSPACE])
def test_noise_of_any_operator_is_seeded_and_needs_a_generator(degradation):
    volume = smooth_periodic((16, 16, 16))
    noisy = {**degradation, "noise_std": 0.05}
    first = degrade(volume, 2, noisy, np.random.default_rng(5))
    np.testing.assert_array_equal(first, degrade(volume, 2, noisy, np.random.default_rng(5)))
    assert not np.array_equal(first, degrade(volume, 2, noisy, np.random.default_rng(6)))
    assert 0.02 < np.std(first - degrade(volume, 2, degradation)) < 0.08
    with pytest.raises(ValueError, match="needs a seeded random generator"):
        degrade(volume, 2, noisy)


def test_back_projection_and_consistency_ignore_the_noise():
    hr = smooth_periodic((16, 16, 16))
    lr = degrade(hr, 2, BLOCK)
    assert lr_consistency(hr, lr, 2, {**BLOCK, "noise_std": 0.1}) == lr_consistency(hr, lr, 2, BLOCK)
    np.testing.assert_array_equal(back_project(hr, lr, 2, {**BLOCK, "noise_std": 0.1}, 1),
                                  back_project(hr, lr, 2, BLOCK, 1))


def test_unknown_operator_is_refused():
    with pytest.raises(ValueError, match="unknown degradation operator 'sinc'"):
        degrade(np.zeros((4, 4, 4)), 2, {"operator": "sinc", "noise_std": 0.0})


def test_the_pair_record_names_its_degradation(tmp_path):
    import json

    save_volume(smooth_periodic((16, 16, 16)), np.eye(4), tmp_path / "brain.nii.gz")
    write_pair(str(tmp_path / "brain.nii.gz"), str(tmp_path / "lr.nii.gz"), str(tmp_path / "pair.json"), 2,
               "kspace", KSPACE, seed=0)
    record = json.loads((tmp_path / "pair.json").read_text())
    assert record["degradation"] == "kspace" and record["operator"] == "kspace" and record["lr_shape"] == [8, 8, 8]


def thick(profile="gaussian", gap=0.0, noise_std=0.0):
    return {"operator": "slice", "profile": profile, "gap": gap, "noise_std": noise_std}


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_box_slice_profile_without_gap_is_the_block_average_along_the_thick_axis(axis):
    volume = np.random.default_rng(5).random((9, 12, 15)).astype(np.float32)
    factor = [1, 1, 1]
    factor[axis] = 3
    lr = degrade(volume, factor, thick("box"))
    expected = np.moveaxis(np.moveaxis(volume, axis, 0).reshape(-1, 3, *np.delete(volume.shape, axis)).mean(axis=1),
                           0, axis)
    np.testing.assert_allclose(lr, expected, rtol=1e-5)
    np.testing.assert_allclose(lr, degrade(volume, factor, BLOCK), rtol=1e-5)


def test_a_slice_gap_leaves_its_share_of_the_signal_unmeasured():
    from mrisr.pairs.operators import slice_profile_weights

    weights = slice_profile_weights(12, 4, "box", gap=1 / 3)  # slices 2 HR voxels thick, 3 apart
    np.testing.assert_allclose(weights.sum(axis=1), 1)
    # Each slice sees its block's middle voxel whole and half of each neighbour: a third of the block is left out.
    np.testing.assert_allclose(weights[1, 3:6], [0.25, 0.5, 0.25])
    assert np.all(weights[1, :3] == 0) and np.all(weights[1, 6:] == 0)
    seen = (weights * 2).sum(axis=0)  # HR voxels' measured share (thickness 2 HR voxels)
    np.testing.assert_allclose(seen.sum() / 12, 1 - 1 / 3)
    # Signal in the first voxel of every block shows only by the half of it that its slice reaches.
    edges_only = np.zeros((4, 4, 12), np.float32)
    edges_only[..., 0::3] = 1.0
    np.testing.assert_allclose(degrade(edges_only, [1, 1, 3], thick("box", gap=1 / 3)), 0.25, atol=1e-6)


@pytest.mark.parametrize("profile", ["gaussian", "box"])
def test_a_slice_profile_keeps_a_constant_and_is_centred_on_the_lr_voxel(profile):
    from mrisr.pairs.operators import FWHM_PER_SIGMA, slice_profile_weights

    np.testing.assert_allclose(degrade(np.full((6, 8, 12), 0.4, np.float32), [1, 2, 3], thick(profile)), 0.4,
                               atol=1e-6)
    weights = slice_profile_weights(30, 10, profile, gap=0.0)
    centres = weights[2:-2] @ (np.arange(30) + 0.5)  # away from the edges, where the tails fold back
    np.testing.assert_allclose(centres, (np.arange(2, 8) + 0.5) * 3, atol=1e-9)
    if profile == "gaussian":  # FWHM = slice thickness = spacing: sigma 3 / 2.355 HR voxels
        variance = weights[4] @ (np.arange(30) + 0.5 - 13.5) ** 2
        np.testing.assert_allclose(np.sqrt(variance - 1 / 12), 3 / FWHM_PER_SIGMA, rtol=0.02)  # less the voxel box


def test_thick_slice_pairs_sit_on_an_edge_aligned_grid_and_back_project(tmp_path):
    from scipy.ndimage import gaussian_filter

    hr = gaussian_filter(np.random.default_rng(7).random((20, 22, 30)), 1.2).astype(np.float32)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    save_volume(hr, affine, tmp_path / "hr.nii.gz")
    write_pair(str(tmp_path / "hr.nii.gz"), str(tmp_path / "lr.nii.gz"), str(tmp_path / "pair.json"), [1, 1, 3],
               "thick", thick(), seed=0)
    lr_image = nib.load(tmp_path / "lr.nii.gz")
    assert lr_image.shape == (20, 22, 10)
    np.testing.assert_allclose(lr_image.affine, lr_affine_for(affine, hr.shape, (20, 22, 10)), atol=1e-6)
    np.testing.assert_allclose(voxel_sizes(lr_image.affine), [1.5, 1.5, 4.5], atol=1e-6)
    lr = lr_image.get_fdata(dtype=np.float32)
    cubic = upsample(lr, hr.shape, "cubic")
    projected = back_project(cubic, lr, [1, 1, 3], thick(), iterations=3)
    assert lr_consistency(projected, lr, [1, 1, 3], thick()) > lr_consistency(cubic, lr, [1, 1, 3], thick()) + 5
    assert np.abs(projected - hr).mean() < np.abs(cubic - hr).mean()
