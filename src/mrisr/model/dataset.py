"""Training data: pairs on a model's output grid, their augmented copies, a memory-mapped cache, and random patches.

The training job first writes every training pair once, uncompressed, into a
cache folder (:func:`build_cache`): the target image, the conditioning image
(the LR cubic-interpolated to the target grid) and the flat indices of the
brain mask's voxels (the foreground, indexed once rather than per patch).
Patches are then read from memory maps (:class:`PatchDataset`), so the
training process's memory does not grow with the number of subjects, and
each patch is a pure function of ``(seed, index)``, so the same seed gives
the same patches whatever the number of DataLoader workers, and a resumed
run continues exactly where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
import shutil
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy import ndimage

from ..grids import resample
from ..io import MrisrError, atomic_path, load_volume
from ..pairs.degrade import degrade, noise_free
from .modelfile import condition_image

log = logging.getLogger(__name__)

ARRAYS = ("target", "condition", "foreground")
# Random streams of their own (beside the blurred copies' noise), so that adding degradations changes no other draw.
DRAW_STREAM, SIMULATED_LR_STREAM = 2, 3


def read_subject(paths: dict[str, str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HR, LR and brain mask of a subject from the paths under ``hr``, ``lr`` and ``mask``."""
    hr = load_volume(paths["hr"]).get_fdata(dtype=np.float32)
    lr = load_volume(paths["lr"]).get_fdata(dtype=np.float32)
    return hr, lr, load_volume(paths["mask"]).get_fdata(dtype=np.float32) > 0.5


def assigned_degradations(subject: str, count: int, names: Sequence[str], seed: int) -> list[str]:
    """The degradation of each of a subject's ``count`` training pairs: ``names`` in turn from a seeded offset.

    Round-robin rather than independent draws: a subject with at least as
    many pairs (itself and its blurred copies) as there are degradations is
    seen under every one, so no subject's anatomy is learnt under one kind of
    LR only by chance; the offset, drawn per subject from a stream of its
    own, varies which blur level meets which degradation across subjects.
    """
    if len(names) == 1:
        return list(names) * count
    offset = int(np.random.default_rng([seed, zlib.crc32(subject.encode()), DRAW_STREAM]).integers(len(names)))
    return [names[(offset + index) % len(names)] for index in range(count)]


def training_pairs(
    subject: str, paths: dict[str, str], factor: Sequence[float], output_factor: Sequence[float],
    degradation: dict, training_degradations: dict[str, dict], sharpness_augment: Sequence[float], seed: int,
):
    """Yield ``(name, target, condition, mask, degradation name)`` for a subject and each of its blurred copies.

    The target is the HR image, or for a model that produces a coarser grid
    (a cascade's first stage) the HR degraded noise-free to ``output_factor``
    with the pairs' ``degradation``. Each pair's LR comes from one of
    ``training_degradations`` (:func:`assigned_degradations`): the subject's
    own from the pairs stage's LR file when its degradation is the pairs'
    one, else simulated from the HR; each blurred copy's (one per sigma of
    ``sharpness_augment``, in target voxels) simulated from it. Real scans
    differ in sharpness and in how they were acquired; without the copies
    and the mixture a model learns the one sharpness and operator of its
    training pairs and over- or under-sharpens others.
    """
    hr, lr, mask = read_subject(paths)
    target = hr
    if not np.allclose(output_factor, 1):
        target = degrade(hr, output_factor, noise_free(degradation))
        mask = resample(mask.astype(np.float32), target.shape, order=1) > 0.5
    names = assigned_degradations(subject, 1 + len(sharpness_augment), list(training_degradations), seed)
    if training_degradations[names[0]] != degradation:
        lr = degrade(hr, factor, training_degradations[names[0]],
                     np.random.default_rng([seed, zlib.crc32(subject.encode()), SIMULATED_LR_STREAM]))
    yield subject, target, condition_image(lr, target.shape), mask, names[0]
    upsampling = np.asarray(factor) / np.asarray(output_factor)
    for index, (sigma, name) in enumerate(zip(sharpness_augment, names[1:])):
        blurred = ndimage.gaussian_filter(target, sigma)
        rng = np.random.default_rng([seed, index, zlib.crc32(subject.encode())])
        blurred_lr = degrade(blurred, upsampling, training_degradations[name], rng)
        yield f"{subject}_blur{sigma:g}", blurred, condition_image(blurred_lr, target.shape), mask, name


def _digest(subjects: dict[str, dict[str, str]], settings: dict) -> str:
    """What a cache was built from: its inputs (path, size, modification time) and settings."""
    inputs = {subject: {kind: [path, os.stat(path).st_size, os.stat(path).st_mtime_ns] for kind, path in paths.items()}
              for subject, paths in subjects.items()}
    text = json.dumps({"inputs": inputs, "settings": settings}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_cache(
    subjects: dict[str, dict[str, str]], folder: str | Path, factor: Sequence[float], output_factor: Sequence[float],
    degradation: dict, training_degradations: dict[str, dict], sharpness_augment: Sequence[float], seed: int,
) -> Path:
    """Write the training pairs of ``subjects`` (ID -> ``hr``/``lr``/``mask`` paths) into ``folder``, once.

    A folder already holding the pairs of the same inputs and settings is
    kept as it is; anything else there is replaced. Returns the folder.
    """
    folder = Path(folder)
    settings = {"factor": list(factor), "output_factor": list(output_factor), "degradation": degradation,
                "training_degradations": training_degradations, "sharpness_augment": list(sharpness_augment),
                "seed": seed}
    digest = _digest(subjects, settings)
    manifest_path = folder / "manifest.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text()).get("digest") == digest:
        log.info("training cache %s is up to date", folder)
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pairs = []
    for subject, paths in subjects.items():
        for name, target, condition, mask, drawn in training_pairs(subject, paths, factor, output_factor, degradation,
                                                                   training_degradations, sharpness_augment, seed):
            foreground = np.flatnonzero(mask).astype(np.uint32 if mask.size < 2**32 else np.uint64)
            for array_name, array in zip(ARRAYS, (target, condition, foreground)):
                np.save(folder / f"{name}.{array_name}.npy", np.ascontiguousarray(array))
            pairs.append({"name": name, "subject": subject, "shape": list(target.shape), "degradation": drawn})
    with atomic_path(manifest_path) as tmp:
        tmp.write_text(json.dumps({"digest": digest, "pairs": pairs}, indent=1))
    log.info("training cache: %d pairs of %d subjects -> %s", len(pairs), len(subjects), folder)
    return folder


class MappedArray:
    """A ``.npy`` file mapped read-only, whose pages are handed back after each read.

    Mapped file pages a process has touched count towards its resident
    memory until the kernel needs them; giving them back after each patch
    keeps the training process's RSS flat however many subjects it reads
    (the data stay in the page cache, so the next read is still fast).
    """

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = header(handle)
            offset = handle.tell()
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        if fortran:
            raise MrisrError(f"{path}: cache arrays must be C-ordered; delete the cache folder and rerun")
        self.array = np.frombuffer(self._map, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(shape)
        self._offset = offset

    def read(self, window: tuple[slice, ...]) -> np.ndarray:
        """A copy of ``array[window]``; the pages it touched no longer count as this process's memory."""
        values = np.array(self.array[window])
        first = np.ravel_multi_index([s.start for s in window], self.array.shape)
        last = np.ravel_multi_index([s.stop - 1 for s in window], self.array.shape)
        start = self._offset + first * self.array.itemsize
        aligned = start - start % mmap.PAGESIZE
        self._map.madvise(mmap.MADV_DONTNEED, aligned, self._offset + (last + 1) * self.array.itemsize - aligned)
        return values


class PatchDataset(torch.utils.data.Dataset):
    """Random training patches from a cache folder; item ``i`` depends only on ``(seed, i)``.

    Each item holds one ``(target, condition)`` pair of images per patch
    shape (one shape for 3D models, three slabs for a tri-planar model),
    each centred on the brain with probability ``foreground_fraction`` and,
    with ``intensity_augment`` a > 0, scaled by exp(U(-a, a)) (target and
    condition alike, so the model does not learn one intensity scale). Each
    item is mirrored along each of ``flip_axes`` with probability 1/2: the
    pairs' degradation is the same either way round, so a mirrored pair is
    as true a training pair as the original. With ``permute_axes`` each item's
    voxel axes come in a random order (target and condition alike): a pair
    thick along z becomes one thick along x or y, and each plane is seen as
    the in-plane one.
    """

    def __init__(self, folder: str | Path, patch_shapes: Sequence[Sequence[int]], foreground_fraction: float,
                 intensity_augment: float, seed: int, flip_axes: Sequence[int] = (),
                 permute_axes: bool = False) -> None:
        self.folder = Path(folder)
        self.pairs = json.loads((self.folder / "manifest.json").read_text())["pairs"]
        self.patch_shapes = [np.asarray(shape) for shape in patch_shapes]
        self.foreground_fraction = foreground_fraction
        self.intensity_augment = intensity_augment
        self.flip_axes = list(flip_axes)
        self.permute_axes = permute_axes
        self.seed = seed
        self._arrays: dict[tuple[str, str], MappedArray] = {}  # opened lazily, in each worker

    def _array(self, pair: str, kind: str) -> MappedArray:
        key = (pair, kind)
        if key not in self._arrays:
            self._arrays[key] = MappedArray(self.folder / f"{pair}.{kind}.npy")
        return self._arrays[key]

    def __len__(self) -> int:
        return 2**62  # items are drawn, not enumerated

    def __getitem__(self, index: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, index])
        # Drawn even when 0, so that switching the augmentation on or off keeps the same patches.
        scale = np.exp(rng.uniform(-self.intensity_augment, self.intensity_augment))
        # The flips draw from a stream of their own: switching them on or off keeps the same patches too.
        coins = np.random.default_rng([self.seed, index, 1]).random(3) < 0.5
        flipped = tuple(axis for axis in self.flip_axes if coins[axis])
        # So does the order of the axes: output axis k is the window's axis order[k].
        order = tuple(np.random.default_rng([self.seed, index, 2]).permutation(3).tolist())
        order = order if self.permute_axes else (0, 1, 2)
        patches = []
        for patch_shape in self.patch_shapes:
            pair = self.pairs[rng.integers(len(self.pairs))]
            shape = np.asarray(pair["shape"])
            window_shape = np.empty(3, int)
            window_shape[list(order)] = patch_shape  # so that the reordered window has the patch's shape
            size = np.minimum(window_shape, shape)
            foreground = self._array(pair["name"], "foreground").array
            if rng.random() < self.foreground_fraction and len(foreground):
                centre = np.array(np.unravel_index(int(foreground[rng.integers(len(foreground))]), shape))
            else:
                centre = np.array([rng.integers(n) for n in shape])
            corner = np.clip(centre - size // 2, 0, shape - size)
            window = tuple(slice(int(c), int(c + n)) for c, n in zip(corner, size))
            target, condition = (np.ascontiguousarray(np.transpose(
                np.flip(self._array(pair["name"], kind).read(window), flipped), order)) * np.float32(scale)
                for kind in ("target", "condition"))
            patches.append((torch.from_numpy(target)[None], torch.from_numpy(condition)[None]))
        return patches


class StepBatches(torch.utils.data.Sampler):
    """Item indices of each training step's batch on one process: step s, rank r, item j is
    ``(s * world + r) * batch + j``, so every (step, rank) draws its own patches, whatever came before."""

    def __init__(self, start_step: int, steps: int, batch_size: int, rank: int, world: int) -> None:
        self.start_step, self.steps, self.batch_size, self.rank, self.world = start_step, steps, batch_size, rank, world

    def __iter__(self):
        for step in range(self.start_step, self.steps):
            first = (step * self.world + self.rank) * self.batch_size
            yield list(range(first, first + self.batch_size))

    def __len__(self) -> int:
        return self.steps - self.start_step
