"""Super-resolving whole volumes: patch-wise DDIM sampling with overlap blending, consistent with the LR.

At every DDIM step the denoiser is evaluated over the whole volume in
overlapping patches whose outputs are blended with Gaussian weights, so the
noisy estimate stays one consistent volume (no seams) while memory is bounded
by the patch, not the volume. The K samples of a subject go through each
patch together, in one batch. A tri-planar model evaluates its three planes'
networks over the whole volume and averages their x0 estimates at every step.
With ``data_consistency`` every x0 estimate is back-projected onto the
volumes that degrade to the LR scan, so samples differ only where the LR
does not decide the answer.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from .degrade import back_project, hr_grid_for
from .intensity import WHITE_MATTER_LEVEL, white_matter_peak
from .io import MrisrError, load_volume, save_volume, voxel_sizes
from .modelfile import (
    ModelSpec, condition_image, condition_to_network, image_from_network, load_model, target_to_network,
)
from .networks import resolve_device, slab_shapes
from .orientation import canonical_grid, to_canonical, to_scan_order

log = logging.getLogger(__name__)


def window_grid(size: int, patch: int, overlap: float, multiple: int) -> tuple[int, list[int]]:
    """The window length and start indices along one axis of ``size`` voxels.

    As few windows of at most ``patch`` voxels as cover the axis with at
    least ``overlap`` of each window shared with the next; each window is
    then shrunk to the shortest length (a multiple of ``multiple``) that
    still covers it so, and the windows are spread evenly. Overlap beyond
    what blending needs is work thrown away. Windows one voxel thin (a
    tri-planar model's slabs) take every slice.
    """
    if patch == 1:
        return 1, list(range(size))
    if size <= patch:
        return int(np.ceil(size / multiple) * multiple), [0]
    count = int(np.ceil((size - patch * overlap) / (patch * (1 - overlap))))
    length = min(patch, int(np.ceil(size / (count - (count - 1) * overlap) / multiple) * multiple))
    return length, [int(round(start)) for start in np.linspace(0, size - length, count)]


def gaussian_weights(patch_size: Sequence[int], sigma_scale: float = 0.125) -> torch.Tensor:
    """Importance map that favours patch centres, where the network has the most context."""
    axes = []
    for n in patch_size:
        coords = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        axes.append(torch.exp(-0.5 * (coords / (sigma_scale * n)) ** 2))
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    return (weights / weights.max()).clamp_min(1e-3)


def sliding_window(
    volumes: torch.Tensor,
    patch_size: Sequence[int],
    predict: Callable[[torch.Tensor], torch.Tensor],
    overlap: float,
    batch_size: int,
    multiple: int = 1,
) -> torch.Tensor:
    """Apply ``predict`` to overlapping windows of ``volumes`` (N, C, X, Y, Z) and blend the outputs.

    Windows are at most ``patch_size`` and laid out by :func:`window_grid`
    (sides a multiple of ``multiple``, the network's downsampling).
    ``predict`` maps a batch (B, C, *window) to (B, C_out, *window); each call
    gets ``batch_size`` window positions of all N volumes. Volumes smaller
    than a window are padded (edge values) and cropped back.
    """
    count, spatial = volumes.shape[0], tuple(volumes.shape[2:])
    grids = [window_grid(n, p, overlap, multiple) for n, p in zip(spatial, patch_size)]
    window_size = [length for length, _ in grids]
    padding = [max(0, length - n) for length, n in zip(window_size, spatial)]
    if any(padding):
        volumes = torch.nn.functional.pad(volumes, [side for p in reversed(padding) for side in (0, p)],
                                          mode="replicate")
    padded = tuple(volumes.shape[2:])
    weights = gaussian_weights(window_size).to(volumes.device)
    corners = list(itertools.product(*(starts for _, starts in grids)))
    output = None
    total_weight = torch.zeros(padded, device=volumes.device)
    for first in range(0, len(corners), batch_size):
        windows = [tuple(slice(c, c + p) for c, p in zip(corner, window_size))
                   for corner in corners[first:first + batch_size]]
        batch = torch.cat([volumes[(slice(None), slice(None), *window)] for window in windows])
        predicted = predict(batch).float()
        if output is None:
            output = torch.zeros((count, predicted.shape[1], *padded), device=volumes.device)
        for index, window in enumerate(windows):
            output[(slice(None), slice(None), *window)] += predicted[index * count:(index + 1) * count] * weights
            total_weight[window] += weights
    output = output / total_weight
    return output[(slice(None), slice(None), *(slice(0, n) for n in spatial))]


def evaluated_voxels(shape: Sequence[int], patch_size: Sequence[int], overlap: float, multiple: int) -> int:
    """Voxels one sliding-window pass feeds the network (over the volume's own voxel count: the overlap cost)."""
    grids = [window_grid(n, p, overlap, multiple) for n, p in zip(shape, patch_size)]
    return int(np.prod([length * len(starts) for length, starts in grids]))


def sample_patch_shapes(spec: ModelSpec, patch_size: Sequence[int]) -> list[list[int]]:
    """The windows a model is evaluated over: the 3D patch, or a tri-planar model's three slabs."""
    return slab_shapes(list(patch_size)) if spec.kind == "triplanar" else [list(patch_size)]


def sample_volume(
    condition: np.ndarray,
    network: torch.nn.Module,
    spec: ModelSpec,
    settings: dict,
    seed: int,
    project: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``settings["n_samples"]`` DDIM samples given the conditioning image (output grid, [0, 1]).

    Returns the estimate and the samples' voxel-wise standard deviation (an
    uncertainty map). The estimate is, with ``estimate: one_pass``, the mean
    of the first step's x0 estimates: the network's posterior mean, which a
    mean of a few samples approaches only with the samples' spread as error
    (docs/decisions.md); with ``estimate: mean``, the mean of the samples.
    Sample i starts from the noise of ``seed + i`` and sees the volume
    mirrored along the ``flip_axes`` that the bits of i name (with axes
    [0, 1, 2], samples 0-7 see all eight mirrorings; axis 0 is left-right in
    the RAS voxel order the volumes are sampled in). A model trained on
    mirrored patches (``train.flip_augment``) gives its answer for each view:
    the estimate averages them (a geometric self-ensemble) and the spread
    also shows where the answer depends on the view (docs/decisions.md).
    ``project`` maps an image estimate onto the images the caller trusts; it
    is applied to every x0 estimate.
    """
    device = resolve_device(settings["device"])
    diffusion, scale = spec.diffusion_process(), spec.residual_scale
    count = settings["n_samples"]
    condition_tensor = torch.from_numpy(np.asarray(condition, np.float32))[None, None].to(device)
    network_condition = condition_to_network(condition_tensor)
    network = network.to(device)
    shapes = sample_patch_shapes(spec, settings["patch_size"])

    def denoise(x_t: torch.Tensor, t: int) -> torch.Tensor:
        def predict(batch: torch.Tensor) -> torch.Tensor:
            t_batch = torch.full((len(batch),), t, dtype=torch.long, device=device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings["autocast"]):
                return network(batch, t_batch)

        seen = diffusion.network_input(x_t, torch.full((len(x_t),), t, dtype=torch.long, device=x_t.device))
        stacked = mirror(torch.cat([seen, network_condition.expand(len(x_t), -1, *condition.shape)], dim=1))
        outputs = [sliding_window(stacked, shape, predict, settings["overlap"], settings["batch_size"],
                                  spec.downsampling) for shape in shapes]
        return mirror(torch.stack(outputs).mean(dim=0))

    def mirror(volumes: torch.Tensor) -> torch.Tensor:
        """Sample i's volumes mirrored along the ``flip_axes`` that the bits of i name (mirroring undoes itself)."""
        if not settings["flip_axes"]:
            return volumes  # no copy of every sample's volumes, twice per network evaluation, for nothing
        mirrored = volumes.clone()
        for index in range(len(volumes)):
            dims = [1 + axis for bit, axis in enumerate(settings["flip_axes"]) if index >> bit & 1]
            if dims:
                mirrored[index] = volumes[index].flip(dims)
        return mirrored

    def project_x0(x0: torch.Tensor) -> torch.Tensor:
        images = image_from_network(x0, condition_tensor, scale).float().cpu().numpy()
        projected = torch.from_numpy(np.stack([project(image[0]) for image in images])[:, None]).to(device)
        return target_to_network(projected, condition_tensor, scale)

    generators = [torch.Generator().manual_seed(seed + index) for index in range(count)]
    noise = torch.stack([torch.randn((1, *condition.shape), generator=g) for g in generators]).to(device)
    started = time.perf_counter()
    with torch.inference_mode():
        first_x0, x0 = diffusion.ddim_sample(denoise, noise, settings["steps"], settings["eta"], generators,
                                             project_x0 if project else None, settings["refine_from"])

        def to_images(x: torch.Tensor) -> np.ndarray:
            return image_from_network(x.float(), condition_tensor, scale)[:, 0].clamp(0, 1).cpu().numpy()

        samples = to_images(x0)
        estimate = to_images(first_x0).mean(axis=0) if settings["estimate"] == "one_pass" else samples.mean(axis=0)
    log.info("%d sample(s), %d DDIM steps, %s voxels: %.1f s", count, settings["steps"], condition.shape,
             time.perf_counter() - started)
    return estimate.astype(np.float32), samples.std(axis=0).astype(np.float32)


def super_resolve(
    lr_volume: np.ndarray, output_shape: Sequence[int], spec: ModelSpec, network: torch.nn.Module, settings: dict,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One model's estimate and sample sd on ``output_shape`` from an LR volume in [0, 1]."""
    def consistent(image: np.ndarray) -> np.ndarray:
        return back_project(image, lr_volume, spec.upsampling, spec.degradation["order"],
                            spec.degradation["antialias"], settings["consistency_iterations"])

    return sample_volume(condition_image(lr_volume, output_shape), network, spec, settings, seed,
                         consistent if settings["data_consistency"] else None)


def check_voxel_size(lr_image, spec: ModelSpec, path: str) -> None:
    """Refuse an input whose voxels do not fit the model's factor (say, an HR scan given as LR)."""
    expected_mm = np.asarray(spec.voxel_mm) * np.asarray(spec.upsampling)
    input_mm = voxel_sizes(lr_image.affine)
    if np.any(np.abs(input_mm / expected_mm - 1) > 0.25):
        raise MrisrError(
            f"{path}: voxel size {input_mm.round(2).tolist()} mm, but this model turns "
            f"{expected_mm.round(2).tolist()} mm scans into {np.round(spec.voxel_mm, 2).tolist()} mm "
            f"(factor {spec.upsampling}); use a model trained for this factor, or skip this check")


def super_resolve_file(
    lr_path: str, stages: Sequence[tuple[str, dict]], sr_path: str, std_path: str | None, seed: int,
    grid_path: str | None = None, normalize: bool = False, voxel_size_check: bool = False,
) -> None:
    """Super-resolve an LR NIfTI into an SR mean (and sd) NIfTI, through one model or a cascade of them.

    ``stages`` are ``(model file, sampler settings)`` applied in turn (a
    cascade passes each stage's estimate to the next). The final grid comes
    from the pair's ``pair.json`` when given, else from the LR grid and the
    models' factors, in the input's own orientation. ``normalize`` applies the
    training normalisation (white-matter peak to 0.75) to an arbitrary scan and
    writes the result in the input's units.
    """
    lr_image = load_volume(lr_path)
    # The models learnt on scans in the RAS voxel order: sample there, write back in the scan's own order.
    canonical = to_canonical(lr_image)
    volume, affine = canonical.get_fdata(dtype=np.float32), canonical.affine
    scale = 1.0
    if normalize:
        scale = white_matter_peak(volume[volume > 0]) / WHITE_MATTER_LEVEL
    volume = np.clip(volume / scale, 0, 1)
    for index, (model_path, settings) in enumerate(stages):
        spec, network = load_model(model_path, resolve_device(settings["device"]))
        if voxel_size_check and index == 0:
            check_voxel_size(lr_image, spec, lr_path)
        shape, affine = hr_grid_for(affine, volume.shape, spec.upsampling)
        if grid_path and index == len(stages) - 1:
            grid = json.loads(Path(grid_path).read_text())
            shape, affine = canonical_grid(tuple(grid["hr_shape"]), np.asarray(grid["hr_affine"]))
        log.info("stage %d/%d: %s (%s) -> %s voxels", index + 1, len(stages), model_path, spec.kind, shape)
        volume, spread = super_resolve(volume, shape, spec, network, settings, seed)
    estimate, scan_affine = to_scan_order(volume * scale, affine, lr_image.affine)
    save_volume(estimate, scan_affine, sr_path, description="mrisr SR estimate")
    if std_path:
        save_volume(to_scan_order(spread * scale, affine, lr_image.affine)[0], scan_affine, std_path,
                    description="mrisr SR sample sd")
    log.info("%s -> %s: %s voxels of %s mm", lr_path, sr_path, estimate.shape,
             voxel_sizes(scan_affine).round(3).tolist())
