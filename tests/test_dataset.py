"""Training data: blurred copies, the memory-mapped cache, and patches that depend only on (seed, index)."""
from __future__ import annotations

import itertools
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from helpers import load_config
from mrisr.pairs.synthetic import synthetic_subjects as make_subjects
from mrisr.model.dataset import (
    MappedArray, PatchDataset, StepBatches, assigned_degradations, build_cache, training_pairs,
)
from mrisr.model.spec import degradation_of
from mrisr.pairs.degrade import degrade
from mrisr.model.modelfile import condition_image

DEGRADATION = degradation_of(load_config())
TRAINING = {"spline": DEGRADATION}


def synthetic_subjects(folder, count=2):
    return make_subjects(folder, DEGRADATION, count)


def test_blurred_copies_are_softer_pairs_degraded_like_the_real_ones(tmp_path):
    paths = synthetic_subjects(tmp_path, 1)["s0"]
    pairs = list(training_pairs("s0", paths, [2] * 3, [1] * 3, DEGRADATION, TRAINING, [0.5, 1.0], seed=0))
    assert [name for name, *_ in pairs] == ["s0", "s0_blur0.5", "s0_blur1"]
    detail = [np.std(target - condition) for _, target, condition, *_ in pairs]
    assert detail[0] > detail[1] > detail[2] > 0  # blurring leaves less for the model to add
    hr = pairs[0][1]
    np.testing.assert_allclose(pairs[1][1], gaussian_filter(hr, 0.5))
    np.testing.assert_allclose(pairs[1][2], condition_image(degrade(gaussian_filter(hr, 0.5), 2, DEGRADATION),
                                                            hr.shape), atol=1e-6)


def test_one_training_degradation_gives_every_pair_the_pairs_own_lr(tmp_path):
    paths = synthetic_subjects(tmp_path, 1)["s0"]
    pairs = list(training_pairs("s0", paths, [2] * 3, [1] * 3, DEGRADATION, TRAINING, [0.5], seed=0))
    assert [drawn for *_, drawn in pairs] == ["spline", "spline"]
    lr = nib.load(paths["lr"]).get_fdata(dtype=np.float32)
    np.testing.assert_array_equal(pairs[0][2], condition_image(lr, pairs[0][1].shape))  # the pairs stage's file


def test_several_degradations_are_taken_in_turn_from_a_seeded_offset():
    names = ["spline", "block", "kspace"]
    assert assigned_degradations("s0", 4, ["spline"], seed=1) == ["spline"] * 4
    drawn = {subject: assigned_degradations(subject, 5, names, seed=1) for subject in ("a", "b", "c", "d", "e")}
    for subject, assigned in drawn.items():
        assert set(assigned) == set(names)  # five pairs, three degradations: every one is seen
        assert assigned == assigned_degradations(subject, 5, names, seed=1)  # seeded
        first = names.index(assigned[0])
        assert assigned == [names[(first + i) % 3] for i in range(5)]
    assert len({assigned[0] for assigned in drawn.values()}) > 1  # the offset differs between subjects


def test_each_pair_gets_the_lr_of_its_own_degradation(tmp_path):
    paths = synthetic_subjects(tmp_path, 1)["s0"]
    block = {"operator": "block", "noise_std": 0.0}
    training = {"spline": DEGRADATION, "block": block}
    pairs = list(training_pairs("s0", paths, [2] * 3, [1] * 3, DEGRADATION, training, [0.5, 1.0], seed=0))
    hr = pairs[0][1]
    for name, target, condition, _, drawn in pairs:
        expected = condition_image(degrade(target, 2, training[drawn]), hr.shape)
        np.testing.assert_allclose(condition, expected, atol=1e-6, err_msg=name)
    assert {drawn for *_, drawn in pairs} == {"spline", "block"}


def test_a_stage_that_stops_at_a_coarser_grid_trains_towards_the_noise_free_lr(tmp_path):
    paths = synthetic_subjects(tmp_path, 1)["s0"]
    name, target, condition, mask, _ = next(training_pairs("s0", paths, [2] * 3, [2] * 3, DEGRADATION, TRAINING, [],
                                                           0))
    assert target.shape == condition.shape == mask.shape == (12, 12, 12)


def test_cache_is_written_once_and_rebuilt_when_its_inputs_change(tmp_path):
    subjects = synthetic_subjects(tmp_path)
    folder = build_cache(subjects, tmp_path / "cache", [2] * 3, [1] * 3, DEGRADATION, TRAINING, [0.7], seed=1)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [pair["name"] for pair in manifest["pairs"]] == ["s0", "s0_blur0.7", "s1", "s1_blur0.7"]
    assert {pair["degradation"] for pair in manifest["pairs"]} == {"spline"}
    stamp = (folder / "s0.target.npy").stat().st_mtime_ns
    build_cache(subjects, folder, [2] * 3, [1] * 3, DEGRADATION, TRAINING, [0.7], seed=1)
    assert (folder / "s0.target.npy").stat().st_mtime_ns == stamp  # up to date: kept
    build_cache(subjects, folder, [2] * 3, [1] * 3, DEGRADATION, TRAINING, [], seed=1)
    assert not (folder / "s0_blur0.7.target.npy").exists()  # other settings: rebuilt
    foreground = np.load(folder / "s0.foreground.npy")
    hr = np.load(folder / "s0.target.npy")
    assert np.array_equal(np.flatnonzero(hr > 0.3), foreground)


def test_mapped_arrays_read_like_numpy(tmp_path):
    array = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    np.save(tmp_path / "a.npy", array)
    window = (slice(1, 4), slice(2, 6), slice(0, 3))
    np.testing.assert_array_equal(MappedArray(tmp_path / "a.npy").read(window), array[window])


@pytest.fixture
def cache(tmp_path):
    return build_cache(synthetic_subjects(tmp_path), tmp_path / "cache", [2] * 3, [1] * 3, DEGRADATION, TRAINING, [],
                       seed=0)


def batches(dataset, workers, steps=3, batch=4, rank=0, world=1):
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=StepBatches(0, steps, batch, rank, world),
                                         num_workers=workers)
    return [[(target.clone(), condition.clone()) for target, condition in step] for step in loader]


def test_patches_are_the_same_whatever_the_number_of_workers(cache):
    dataset = PatchDataset(cache, [[8, 8, 8], [1, 8, 8]], 0.9, 0.1, seed=3)
    single, parallel = batches(dataset, 0), batches(dataset, 2)
    for first, second in zip(single, parallel):
        for (t1, c1), (t2, c2) in zip(first, second):
            torch.testing.assert_close(t1, t2)
            torch.testing.assert_close(c1, c2)
    assert single[0][0][0].shape == (4, 1, 8, 8, 8) and single[0][1][0].shape == (4, 1, 1, 8, 8)
    other_rank = batches(dataset, 0, rank=1, world=2)
    assert not torch.equal(other_rank[0][0][0], single[0][0][0])


def test_intensity_augmentation_scales_target_and_condition_alike(cache):
    plain = PatchDataset(cache, [[8, 8, 8]], 1.0, 0.0, seed=5)[7][0]
    scaled = PatchDataset(cache, [[8, 8, 8]], 1.0, 0.2, seed=5)[7][0]
    ratio = scaled[0] / plain[0]
    finite = plain[0] > 0.05
    assert not torch.allclose(ratio[finite], torch.ones_like(ratio[finite]))
    torch.testing.assert_close(scaled[1], plain[1] * ratio[finite][0])
    torch.testing.assert_close(ratio[finite], torch.full_like(ratio[finite], float(ratio[finite][0])))


def test_flip_augmentation_mirrors_target_and_condition_alike(cache):
    plain = PatchDataset(cache, [[8, 8, 8]], 1.0, 0.0, seed=5)
    flipped = PatchDataset(cache, [[8, 8, 8]], 1.0, 0.0, seed=5, flip_axes=[0, 1, 2])
    seen = set()
    for index in range(16):
        (target, condition), = plain[index]
        (flipped_target, flipped_condition), = flipped[index]
        # The same patch (the flips draw from a stream of their own), mirrored along some of the axes.
        axes = next(axes for axes in ((), (1,), (2,), (3,), (1, 2), (1, 3), (2, 3), (1, 2, 3))
                    if torch.equal(flipped_target, target.flip(axes) if axes else target))
        torch.testing.assert_close(flipped_condition, condition.flip(axes) if axes else condition)
        seen.add(axes)
    assert len(seen) > 4


def test_permuted_axes_reorder_target_and_condition_alike(cache):
    plain = PatchDataset(cache, [[8, 8, 8]], 1.0, 0.0, seed=5)
    permuted = PatchDataset(cache, [[8, 8, 8]], 1.0, 0.0, seed=5, permute_axes=True)
    seen = set()
    for index in range(16):
        (target, condition), = plain[index]
        (permuted_target, permuted_condition), = permuted[index]
        # The same patch (the order draws from a stream of its own), its axes in some order.
        order = next(order for order in itertools.permutations((1, 2, 3))
                     if torch.equal(permuted_target, target.permute(0, *order)))
        torch.testing.assert_close(permuted_condition, condition.permute(0, *order))
        seen.add(order)
    assert len(seen) >= 4
    # A patch that is not a cube keeps its shape whatever the order.
    slabs = PatchDataset(cache, [[8, 4, 2]], 1.0, 0.0, seed=5, permute_axes=True)
    assert all(slabs[index][0][0].shape == (1, 8, 4, 2) for index in range(8))


def test_foreground_patches_are_centred_in_the_mask(cache):
    dataset = PatchDataset(cache, [[1, 1, 1]], 1.0, 0.0, seed=0)
    values = [float(dataset[index][0][0]) for index in range(50)]
    assert min(values) > 0.3  # every centre voxel inside the mask (hr > 0.3)
