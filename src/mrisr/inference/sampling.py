"""DDIM sampling of whole volumes: every denoising step evaluated in windows, the samples batched together.

At every DDIM step the denoiser is evaluated over the whole volume in
overlapping windows (:mod:`mrisr.inference.windows`), so the noisy estimate
stays one consistent volume while memory is bounded by the window. The K
samples of a subject go through each window together, in one batch. A
tri-planar model evaluates its three planes' networks over the whole volume
and averages their x0 estimates at every step. With ``data_consistency``
every x0 estimate is back-projected onto the volumes that degrade to the LR
scan, so samples differ only where the LR does not decide the answer.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch

from ..grids import lr_shape_for
from ..io import MrisrError
from ..model.modelfile import condition_image, condition_to_network, image_from_network, target_to_network
from ..model.networks import resolve_device, slab_shapes
from ..model.spec import ModelSpec
from ..pairs.degrade import back_project
from .windows import sliding_window

log = logging.getLogger(__name__)


def sample_patch_shapes(spec: ModelSpec, patch_size: Sequence[int]) -> list[list[int]]:
    """The windows a model is evaluated over: the 3D patch, or a tri-planar model's three slabs."""
    return slab_shapes(list(patch_size)) if spec.kind == "triplanar" else [list(patch_size)]


class Sampled(NamedTuple):
    """What sampling a volume gives: the estimate and two spreads that say where it may be wrong."""

    estimate: np.ndarray   # the one-pass posterior mean (or the mean of the samples)
    sd: np.ndarray         # voxel-wise sd of the final samples (the raw uncertainty map)
    view_sd: np.ndarray    # voxel-wise sd of the first step's x0 estimates: with a scaled input, the spread
                           # over the mirrored views alone (free: no network pass more than the estimate's)


def sample_volume(
    condition: np.ndarray,
    network: torch.nn.Module,
    spec: ModelSpec,
    settings: dict,
    seed: int,
    project: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Sampled:
    """Draw ``settings["n_samples"]`` DDIM samples given the conditioning image (output grid, [0, 1]).

    Returns the estimate, the samples' voxel-wise standard deviation (the raw
    uncertainty map) and the spread of the first step's x0 estimates. The
    estimate is, with ``estimate: one_pass``, the mean
    of the first step's x0 estimates: the network's posterior mean, which a
    mean of a few samples approaches only with the samples' spread as error
    (docs/decisions/0028-one-pass-estimate.md); with ``estimate: mean``, the mean of the samples.
    Sample i starts from the noise of ``seed + i`` and sees the volume
    mirrored along the ``flip_axes`` that the bits of i name (with axes
    [0, 1, 2], samples 0-7 see all eight mirrorings; axis 0 is left-right in
    the RAS voxel order the volumes are sampled in). A model trained on
    mirrored patches (``train.flip_augment``) gives its answer for each view:
    the estimate averages them (a geometric self-ensemble) and the spread
    also shows where the answer depends on the view (docs/decisions/0033-mirrored-patches-and-views.md).
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

        samples, first_images = to_images(x0), to_images(first_x0)
        estimate = first_images.mean(axis=0) if settings["estimate"] == "one_pass" else samples.mean(axis=0)
    log.info("%d sample(s), %d DDIM steps, %s voxels: %.1f s", count, settings["steps"], condition.shape,
             time.perf_counter() - started)
    return Sampled(estimate.astype(np.float32), samples.std(axis=0).astype(np.float32),
                   first_images.std(axis=0).astype(np.float32))


def consistency_operator(spec: ModelSpec, settings: dict) -> dict:
    """The degradation data consistency assumes: the sampler's ``consistency_degradation``, else the model's own."""
    return settings["consistency_degradation"] or spec.degradation


def model_axis_order(lr_shape: Sequence[int], output_shape: Sequence[int], factor: Sequence[float]) -> tuple[int, ...]:
    """The order of the input's axes that makes an LR volume of ``lr_shape`` and its ``output_shape`` a step of the
    model's per-axis ``factor``: the identity when it already is, else the fewest axes moved (a model trained
    with its thick axis along z super-resolves a scan whose thick axis is x with x and z swapped).

    Raises :class:`MrisrError` when no order of the axes fits.
    """
    def moved(order: tuple[int, ...]) -> int:
        return sum(a != i for i, a in enumerate(order))

    orders = sorted(itertools.permutations(range(3)), key=lambda order: (moved(order), order))
    for order in orders:
        if lr_shape_for([output_shape[a] for a in order], factor) == tuple(lr_shape[a] for a in order):
            return order
    raise MrisrError(f"an LR volume of shape {tuple(lr_shape)} is not a step of factor {list(factor)} towards "
                     f"{tuple(output_shape)} along any order of its axes")


def super_resolve(
    lr_volume: np.ndarray, output_shape: Sequence[int], spec: ModelSpec, network: torch.nn.Module, settings: dict,
    seed: int, consistency_lr: np.ndarray | None = None,
) -> Sampled:
    """One model's estimate and spreads on ``output_shape`` from an LR volume in [0, 1].

    An anisotropic model samples the volume with its axes reordered so that
    the input's factor along each axis is the model's
    (:func:`model_axis_order`; a thick-slice scan's thick axis becomes the
    model's), and data consistency is with the LR in that order, at the
    factor it has along each axis, through ``settings["consistency_degradation"]``
    (``None``: the model's pairs degradation); the outputs come back in the
    input's order. ``consistency_lr`` (default: ``lr_volume``) is the LR the
    projection reproduces when it is not what the network sees: a head's scan,
    of which the network sees the brain alone, degrades from the whole head,
    and a global operator (``kspace``) spreads the mask's edge over the box.
    """
    order = model_axis_order(lr_volume.shape, output_shape, spec.step_factor)
    lr_model = np.transpose(lr_volume, order)
    consistency_target = lr_model if consistency_lr is None else np.transpose(consistency_lr, order)
    if order != (0, 1, 2):
        log.info("input axes %s reordered to %s: its factors along them are the model's %s", (0, 1, 2), order,
                 spec.step_factor)
    operator = consistency_operator(spec, settings)

    def consistent(image: np.ndarray) -> np.ndarray:
        return back_project(image, consistency_target, spec.step_factor, operator, settings["consistency_iterations"])

    sampled = sample_volume(condition_image(lr_model, [output_shape[a] for a in order]), network, spec, settings, seed,
                            consistent if settings["data_consistency"] else None)
    restore = tuple(int(a) for a in np.argsort(order))
    return Sampled(*(np.ascontiguousarray(volume.transpose(restore)) for volume in sampled))
