"""Super-resolving whole volumes: patch-wise DDIM sampling with overlap blending.

At every DDIM step the denoiser is evaluated over the whole volume in
overlapping patches whose outputs are blended with Gaussian weights, so the
noisy estimate stays one consistent volume (no seams) while memory is bounded
by the patch, not the volume.
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

from .degrade import hr_grid_for, upsample
from .diffusion import GaussianDiffusion
from .io import MrisrError, load_volume, save_volume, voxel_sizes
from .model import UNet3D, resolve_device

log = logging.getLogger(__name__)


def patch_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Start indices of patches covering ``size`` voxels with at least ``overlap`` fractional overlap."""
    if size <= patch:
        return [0]
    stride = max(1, int(patch * (1 - overlap)))
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def gaussian_weights(patch_size: Sequence[int], sigma_scale: float = 0.125) -> torch.Tensor:
    """Importance map that favours patch centres, where the network has the most context."""
    axes = []
    for n in patch_size:
        coords = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        axes.append(torch.exp(-0.5 * (coords / (sigma_scale * n)) ** 2))
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    return (weights / weights.max()).clamp_min(1e-3)


def sliding_window(
    volume: torch.Tensor,
    patch_size: Sequence[int],
    predict: Callable[[torch.Tensor], torch.Tensor],
    overlap: float = 0.5,
    batch_size: int = 4,
) -> torch.Tensor:
    """Apply ``predict`` to overlapping patches of ``volume`` (C, X, Y, Z) and blend the outputs.

    ``predict`` maps a batch (B, C, *patch) to (B, C_out, *patch). Volumes
    smaller than the patch are padded (edge values) and cropped back.
    """
    spatial = tuple(volume.shape[1:])
    padding = [max(0, p - s) for p, s in zip(patch_size, spatial)]
    if any(padding):
        pad = [side for p in reversed(padding) for side in (0, p)]
        volume = torch.nn.functional.pad(volume[None], pad, mode="replicate")[0]
    padded = tuple(volume.shape[1:])
    weights = gaussian_weights(patch_size).to(volume.device)
    corners = list(itertools.product(*(patch_starts(n, p, overlap) for n, p in zip(padded, patch_size))))
    output = None
    total_weight = torch.zeros(padded, device=volume.device)
    for first in range(0, len(corners), batch_size):
        chunk = corners[first:first + batch_size]
        slices = [tuple(slice(c, c + p) for c, p in zip(corner, patch_size)) for corner in chunk]
        batch = torch.stack([volume[(slice(None), *s)] for s in slices])
        predicted = predict(batch).float()
        if output is None:
            output = torch.zeros((predicted.shape[1], *padded), device=volume.device)
        for index, s in enumerate(slices):
            output[(slice(None), *s)] += predicted[index] * weights
            total_weight[s] += weights
    output = output / total_weight
    return output[(slice(None), *(slice(0, n) for n in spatial))]


def condition_from_lr(lr_volume: np.ndarray, hr_shape: Sequence[int]) -> np.ndarray:
    """The network's conditioning input: the LR volume cubic-interpolated to the HR grid, clipped to [0, 1]."""
    return np.clip(upsample(lr_volume, hr_shape, "cubic"), 0.0, 1.0)


def load_model(path: str, device: torch.device | str = "cpu") -> tuple[UNet3D, GaussianDiffusion, dict]:
    """Load a trained model file: the EMA network (eval mode), its diffusion process and metadata."""
    bundle = torch.load(path, map_location=device, weights_only=False)
    network = UNet3D(**bundle["model"]).to(device)
    network.load_state_dict(bundle["state_dict"])
    network.eval()
    diffusion = GaussianDiffusion(**bundle["diffusion"])
    return network, diffusion, bundle


def sample_volume(
    condition: np.ndarray,
    network: UNet3D,
    diffusion: GaussianDiffusion,
    residual_scale: float,
    steps: int = 10,
    n_samples: int = 4,
    eta: float = 0.0,
    patch_size: Sequence[int] = (32, 32, 32),
    overlap: float = 0.25,
    batch_size: int = 4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    autocast: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n_samples`` DDIM samples given the interpolated LR ``condition`` (HR grid, [0, 1]).

    Returns their mean (the estimate) and voxel-wise standard deviation (an
    uncertainty map). The network predicts the residual over ``condition``
    scaled by ``residual_scale`` (0: it predicts the image itself in [-1, 1]).
    """
    condition_tensor = torch.from_numpy(np.asarray(condition, np.float32) * 2 - 1)[None].to(device)
    device_type = torch.device(device).type
    network = network.to(device)

    def denoise(x_t: torch.Tensor, t: int) -> torch.Tensor:
        def predict(batch: torch.Tensor) -> torch.Tensor:
            t_batch = torch.full((batch.shape[0],), t, dtype=torch.long, device=batch.device)
            with torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
                return network(batch, t_batch)

        stacked = torch.cat([x_t[0], condition_tensor], dim=0)
        return sliding_window(stacked, patch_size, predict, overlap, batch_size)[None]

    samples = []
    for index in range(n_samples):
        started = time.perf_counter()
        generator = torch.Generator(device=device).manual_seed(seed + index)
        x0 = diffusion.ddim_sample(denoise, (1, 1, *condition.shape), steps, generator, eta, device)[0, 0]
        x0 = x0.float().cpu().numpy()
        estimate = condition + x0 / residual_scale if residual_scale > 0 else (x0 + 1) / 2
        samples.append(np.clip(estimate, 0.0, 1.0))
        log.info("sample %d/%d: %d DDIM steps in %.1f s", index + 1, n_samples, steps, time.perf_counter() - started)
    stacked_samples = np.stack(samples)
    return stacked_samples.mean(axis=0).astype(np.float32), stacked_samples.std(axis=0).astype(np.float32)


def check_voxel_size(lr_image, bundle: dict, path: str) -> None:
    """Refuse an input whose voxels do not fit the model's factor (say, an HR scan given as LR)."""
    expected_mm = np.asarray(bundle["hr_voxel_mm"]) * np.asarray(bundle["factor"])
    input_mm = voxel_sizes(lr_image.affine)
    if np.any(np.abs(input_mm / expected_mm - 1) > 0.25):
        raise MrisrError(
            f"{path}: voxel size {input_mm.round(2).tolist()} mm, but this model turns "
            f"{expected_mm.round(2).tolist()} mm scans into {np.round(bundle['hr_voxel_mm'], 2).tolist()} mm "
            f"(factor {bundle['factor']}); use a model trained for this factor, or skip this check")


def super_resolve_file(
    lr_path: str, model_path: str, sr_path: str, std_path: str | None, settings: dict, seed: int,
    grid_path: str | None = None, normalize: bool = False, voxel_size_check: bool = False,
) -> None:
    """Super-resolve an LR NIfTI into an SR mean (and sd) NIfTI on the HR grid.

    The HR grid comes from the pair's ``pair.json`` when given, else from the
    LR grid and the model's factor, in the input's own orientation.
    ``normalize`` applies the training normalisation (white-matter peak to
    0.75) to an arbitrary scan and writes the result in the input's units.
    """
    lr_image = load_volume(lr_path)
    device = resolve_device(settings.get("device", "auto"))
    network, diffusion, bundle = load_model(model_path, device)
    if voxel_size_check:
        check_voxel_size(lr_image, bundle, lr_path)
    if grid_path:
        grid = json.loads(Path(grid_path).read_text())
        hr_shape, hr_affine = tuple(grid["hr_shape"]), np.asarray(grid["hr_affine"])
    else:
        hr_shape, hr_affine = hr_grid_for(lr_image.affine, lr_image.shape, bundle["factor"])
    volume = lr_image.get_fdata(dtype=np.float32)
    scale = 1.0
    if normalize:  # preprocess imports ANTs: only the command line needs it
        from .intensity import WHITE_MATTER_LEVEL, white_matter_peak

        scale = white_matter_peak(volume[volume > 0]) / WHITE_MATTER_LEVEL
    options = {"patch_size": bundle["patch_size"], **{k: v for k, v in settings.items() if k != "device"}}
    mean, std = sample_volume(condition_from_lr(np.clip(volume / scale, 0, 1), hr_shape),
                              network, diffusion, bundle["residual_scale"], seed=seed, device=device, **options)
    save_volume(mean * scale, hr_affine, sr_path, description="mrisr SR (mean of samples)")
    if std_path:
        save_volume(std * scale, hr_affine, std_path, description="mrisr SR sample sd")
    log.info("%s -> %s: %s voxels of %s mm", lr_path, sr_path, hr_shape, voxel_sizes(hr_affine).round(3).tolist())
