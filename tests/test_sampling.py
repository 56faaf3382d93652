"""Sliding-window inference (coverage, exact reconstruction, blending, padding) and what sampling returns."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from helpers import tiny_config
from mrisr.inference.sampling import sample_volume
from mrisr.io import MrisrError
from mrisr.inference.windows import evaluated_voxels, gaussian_weights, sliding_window, window_grid
from mrisr.model.spec import model_spec


@pytest.mark.parametrize("size,patch,overlap,multiple", [
    (64, 32, 0.5, 4), (70, 32, 0.25, 4), (32, 32, 0.5, 4), (33, 16, 0.0, 1), (144, 64, 0.125, 8), (96, 32, 0.25, 4)])
def test_windows_cover_every_voxel_with_the_overlap_asked_for(size, patch, overlap, multiple):
    length, starts = window_grid(size, patch, overlap, multiple)
    assert length <= patch and length % multiple == 0
    covered = np.zeros(size, bool)
    for start in starts:
        covered[start:start + length] = True
    assert covered.all() and starts[0] == 0 and starts[-1] == size - length
    assert all(length - (b - a) >= overlap * length - 1 for a, b in zip(starts, starts[1:]))


def test_shrunk_windows_waste_less_work_than_full_ones():
    assert window_grid(144, 64, 0.25, 4) == (60, [0, 42, 84])  # three windows of 64 would evaluate 192 voxels
    assert window_grid(10, 1, 0.25, 1) == (1, list(range(10)))  # a slab's thin side: every slice once
    assert evaluated_voxels((144, 176, 152), (64, 64, 64), 0.125, 4) / (144 * 176 * 152) < 1.45


def test_identity_predictor_reconstructs_every_volume_of_the_batch_exactly():
    volumes = torch.randn(3, 2, 40, 36, 20)
    calls = []
    output = sliding_window(volumes, (16, 16, 16), lambda batch: calls.append(len(batch)) or batch, overlap=0.5,
                            batch_size=4)
    torch.testing.assert_close(output, volumes)
    assert max(calls) == 4 * 3  # the volumes share each call: batch_size positions of all of them


def test_volume_smaller_than_the_patch_is_padded_and_cropped_back():
    volume = torch.randn(1, 1, 10, 20, 12)
    output = sliding_window(volume, (16, 16, 16), lambda batch: batch * 2, overlap=0.25, batch_size=2, multiple=4)
    assert output.shape == volume.shape
    torch.testing.assert_close(output, volume * 2)


def test_overlapping_predictions_are_blended_not_overwritten():
    # A predictor that returns the patch's own mean: blended output varies smoothly between patches.
    volume = torch.arange(64, dtype=torch.float32).reshape(1, 1, 64, 1, 1).expand(1, 1, 64, 16, 16).contiguous()
    output = sliding_window(volume, (32, 16, 16), lambda b: b.mean(dim=(2, 3, 4), keepdim=True).expand_as(b),
                            overlap=0.5, batch_size=4)
    profile = output[0, 0, :, 8, 8]
    assert profile[0] == pytest.approx(15.5, abs=0.5) and profile[-1] == pytest.approx(47.5, abs=0.5)
    assert torch.all(torch.diff(profile) >= -1e-4)  # monotone: weights mix neighbouring patches
    assert len(torch.unique(profile.round(decimals=3))) > 3


def test_gaussian_weights_peak_at_the_centre():
    weights = gaussian_weights((9, 9, 9))
    assert weights[4, 4, 4] == weights.max() == 1 and weights.min() > 0


class Convolution(torch.nn.Module):
    """A stand-in denoiser: one convolution of the (noisy, condition) channels, whatever the timestep."""

    def __init__(self, kernel: int):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(2, 1, kernel, padding=kernel // 2)

    def forward(self, x, t):
        return self.conv(x)


# The tiny test config's 3D model, one U-Net level (windows of any size), and its sampler in float32 on the CPU.
CONFIG = tiny_config({"network": {"channel_mult": [1]}, "diffusion": {"timesteps": 100},
                      "sampler": {"patch_size": [8, 8, 8], "batch_size": 4, "autocast": False, "device": "cpu"}})
STAND_IN_SPEC = model_spec(CONFIG, "diffusion3d", [1.0] * 3, [], {})


def sampler(**settings) -> dict:
    return {**STAND_IN_SPEC.sampler, **settings}


@pytest.mark.parametrize("flip_axes", [[0], [0, 1, 2]])
def test_mirrored_views_are_mirrored_back(flip_axes):
    settings = sampler(steps=2, n_samples=2 ** len(flip_axes), estimate="mean", eta=0.0)
    condition = np.random.default_rng(0).random((12, 10, 8), np.float32)
    results = {}
    for kernel in (1, 3):
        for axes in ([], flip_axes):
            results[kernel, len(axes)] = sample_volume(condition, Convolution(kernel), STAND_IN_SPEC,
                                                       {**settings, "flip_axes": axes}, seed=0)
    # A 1x1x1 convolution does not care which way round it sees the volume: mirroring changes nothing ...
    np.testing.assert_allclose(results[1, len(flip_axes)][0], results[1, 0][0], atol=1e-6)
    # ... a 3x3x3 one does, so the flips really happened (and were undone, or the check above would fail).
    assert np.abs(results[3, len(flip_axes)][0] - results[3, 0][0]).max() > 1e-4


def test_the_one_pass_estimate_is_the_first_step_and_the_spread_comes_from_the_samples():
    settings = sampler(steps=3, n_samples=3, eta=1.0, flip_axes=[])
    condition = np.random.default_rng(0).random((12, 10, 8), np.float32)
    network = Convolution(3)
    one_pass, spread, _ = sample_volume(condition, network, STAND_IN_SPEC, {**settings, "estimate": "one_pass"}, seed=0)
    mean, mean_spread, _ = sample_volume(condition, network, STAND_IN_SPEC, {**settings, "estimate": "mean"}, seed=0)
    first_step, *_ = sample_volume(condition, network, STAND_IN_SPEC, {**settings, "steps": 1, "estimate": "mean"},
                                  seed=0)
    np.testing.assert_allclose(one_pass, first_step, atol=1e-6)
    np.testing.assert_array_equal(spread, mean_spread)
    assert np.abs(one_pass - mean).max() > 1e-4 and spread.max() > 0


def test_with_a_scaled_input_the_first_step_does_not_depend_on_the_noise():
    settings = sampler(steps=1, n_samples=3, eta=0.0, flip_axes=[], estimate="mean")
    condition = np.random.default_rng(0).random((12, 10, 8), np.float32)
    spreads = {}
    for scale_input in (False, True):
        spec = replace(STAND_IN_SPEC, diffusion={**STAND_IN_SPEC.diffusion, "scale_input": scale_input})
        spreads[scale_input] = sample_volume(condition, Convolution(3), spec, settings, seed=0)[1].max()
    # Raw x_T is noise the network must learn to ignore; scaled, each sample's first estimate is the same.
    assert spreads[False] > 1e-3 and spreads[True] < 1e-3 * spreads[False]


def test_the_view_spread_is_the_first_steps_spread_over_the_mirrored_views():
    settings = sampler(steps=2, n_samples=2, eta=0.0, estimate="one_pass")
    condition = np.random.default_rng(0).random((12, 10, 8), np.float32)
    unmirrored = sample_volume(condition, Convolution(3), STAND_IN_SPEC, {**settings, "flip_axes": []}, seed=0)
    mirrored = sample_volume(condition, Convolution(3), STAND_IN_SPEC, {**settings, "flip_axes": [0]}, seed=0)
    # With a scaled input the first step sees (almost) no noise: one view gives one answer, two views two.
    assert mirrored.view_sd.max() > 1e-3 and unmirrored.view_sd.max() < 0.1 * mirrored.view_sd.max()


def test_the_model_axis_order_moves_the_thick_axis_where_the_model_has_it():
    from mrisr.inference.sampling import model_axis_order

    assert model_axis_order((20, 22, 10), (20, 22, 30), [1, 1, 3]) == (0, 1, 2)
    assert model_axis_order((10, 22, 30), (30, 22, 30), [1, 1, 3]) == (2, 1, 0)  # x thick: x and z swap
    assert model_axis_order((20, 11, 30), (20, 33, 30), [1, 1, 3]) == (0, 2, 1)  # y thick: y and z swap
    assert model_axis_order((10, 11, 12), (20, 22, 24), [2, 2, 2]) == (0, 1, 2)
    with pytest.raises(MrisrError, match="not a step of factor"):
        model_axis_order((10, 11, 12), (20, 22, 24), [1, 1, 3])


THICK = {"operator": "slice", "profile": "gaussian", "gap": 0.0, "noise_std": 0.0}


def test_data_consistency_assumes_the_degradation_the_sampler_names():
    from mrisr.inference.sampling import super_resolve
    from mrisr.model.spec import with_consistency_degradation
    from mrisr.pairs.degrade import degrade, lr_consistency

    hr = np.random.default_rng(2).random((16, 16, 16)).astype(np.float32)
    kspace = CONFIG["degradations"]["kspace"]
    lr = degrade(hr, 2, kspace)
    settings = sampler(steps=1, n_samples=1, flip_axes=[], data_consistency=True, consistency_iterations=3)
    named = with_consistency_degradation(CONFIG, {**settings, "consistency_degradation": "kspace"})
    assert named["consistency_degradation"] == {"name": "kspace", **kspace}
    own, assumed = (super_resolve(lr, hr.shape, STAND_IN_SPEC, Convolution(3), s, seed=0).estimate
                    for s in (settings, named))
    # Each estimate reproduces the LR through the operator its projection assumed, and better than the other does.
    assert lr_consistency(assumed, lr, 2, kspace) > lr_consistency(own, lr, 2, kspace) + 3
    spline = STAND_IN_SPEC.degradation
    assert lr_consistency(own, lr, 2, spline) > lr_consistency(assumed, lr, 2, spline) + 3


def test_the_projection_reproduces_the_lr_it_is_given_not_the_one_the_network_sees():
    from mrisr.inference.sampling import super_resolve
    from mrisr.pairs.degrade import degrade, lr_consistency

    # A head's scan: the network sees its brain (a box of it, masked), the projection reproduces all of it.
    hr = np.random.default_rng(3).random((16, 16, 16)).astype(np.float32)
    kspace = CONFIG["degradations"]["kspace"]
    head = degrade(hr, 2, kspace)
    brain = np.zeros_like(head)
    brain[2:6, 2:6, 2:6] = head[2:6, 2:6, 2:6]
    settings = sampler(steps=1, n_samples=1, flip_axes=[], data_consistency=True, consistency_iterations=3,
                       consistency_degradation={"name": "kspace", **kspace})
    masked, whole = (super_resolve(brain, hr.shape, STAND_IN_SPEC, Convolution(3), settings, seed=0,
                                   consistency_lr=target).estimate for target in (None, head))
    assert lr_consistency(whole, head, 2, kspace) > lr_consistency(masked, head, 2, kspace) + 3


@pytest.mark.parametrize("thick_axis", [0, 1])
def test_a_scan_thick_along_another_axis_is_sampled_in_the_models_orientation(thick_axis):
    from mrisr.inference.sampling import super_resolve
    from mrisr.pairs.degrade import degrade, lr_consistency

    spec = replace(STAND_IN_SPEC, factor=[1.0, 1.0, 3.0], degradation=THICK)
    settings = sampler(steps=2, n_samples=1, eta=0.0, flip_axes=[], data_consistency=True, consistency_iterations=2)
    hr = np.random.default_rng(1).random((12, 12, 12)).astype(np.float32)
    swap = [0, 1, 2]
    swap[thick_axis], swap[2] = 2, thick_axis
    factor = np.ones(3)
    factor[thick_axis] = 3
    lr = degrade(hr, factor, THICK)
    estimate, spread, _ = super_resolve(lr, hr.shape, spec, Convolution(3), settings, seed=0)
    # The same as sampling the scan turned so its thick axis is z, turned back: the model saw it as it learnt.
    turned = super_resolve(lr.transpose(swap), hr.shape, spec, Convolution(3), settings, seed=0).estimate
    np.testing.assert_allclose(estimate, turned.transpose(swap), atol=1e-6)
    assert estimate.shape == hr.shape == spread.shape
    # Data consistency was with the LR as it is, at its own factor along each axis.
    assert lr_consistency(estimate, lr, factor, THICK) > 30
