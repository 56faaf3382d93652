"""Preprocessing a T1w scan: reorientation, bias correction, skull stripping, registration, QC, normalisation, crop.

Every scan is first put in the RAS voxel order (:mod:`mrisr.preprocess.orientation`), so
that ROBEX and ANTs see what they expect whatever the scan's storage order;
after registration the QC figures of :mod:`mrisr.preprocess.qc` decide whether the
subject goes on. Bias field and registration are *estimated* at a coarse working spacing (2 mm
by default) and *applied* at full resolution: both are smooth, so nothing is
lost, and it is about ten times faster than estimating them at 1 mm.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import ants
import numpy as np
from scipy import ndimage

from . import qc
from ..data.embedded import mni152_path
from ..io import MrisrError, atomic_path, load_volume, save_volume
from .intensity import normalise_intensity
from .orientation import axis_codes, obliquity_degrees, to_canonical, to_scan_order
from .skullstrip import brain_mask, decide, nonzero_mask, to_ants

log = logging.getLogger(__name__)

REGISTRATIONS = {"rigid": "Rigid", "affine": "Affine", "syn": "antsRegistrationSyNQuick[s]"}


def template_mask(template: np.ndarray) -> np.ndarray:
    """Brain mask of a skull-stripped template: its non-zero voxels, holes filled."""
    mask = ndimage.binary_closing(template > 0.02 * template.max(), iterations=2)
    return ndimage.binary_fill_holes(mask)


def crop_box(mask: np.ndarray, crop_shape: Sequence[int] | None, multiple: int) -> tuple[slice, ...]:
    """A box of ``crop_shape`` centred on the mask (or its bounding box rounded up to ``multiple``).

    The box may extend past the volume; :func:`crop_or_pad` fills that with zeros.
    """
    indices = np.argwhere(mask)
    low, high = indices.min(axis=0), indices.max(axis=0) + 1
    if crop_shape is None:
        crop_shape = [int(np.ceil((top - bottom) / multiple) * multiple) for bottom, top in zip(low, high)]
    centre = (low + high) // 2
    return tuple(slice(int(c - s // 2), int(c - s // 2 + s)) for c, s in zip(centre, crop_shape))


def crop_or_pad(volume: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """Cut ``box`` out of ``volume``, zero-filling where it lies outside."""
    output = np.zeros([s.stop - s.start for s in box], dtype=volume.dtype)
    source, target = [], []
    for s, n in zip(box, volume.shape):
        start, stop = max(s.start, 0), min(s.stop, n)
        source.append(slice(start, stop))
        target.append(slice(start - s.start, stop - s.start))
    output[tuple(target)] = volume[tuple(source)]
    return output


def cropped_affine(affine: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """Affine of the sub-grid starting at the box's first voxel."""
    shift = np.eye(4)
    shift[:3, 3] = [s.start for s in box]
    return affine @ shift


@dataclass
class Template:
    """The target space: template image, its brain mask, and the crop every subject shares."""

    image: ants.ANTsImage
    mask: np.ndarray
    box: tuple[slice, ...]
    affine: np.ndarray


def load_template(
    spacing: float, crop_shape: Sequence[int] | None, multiple: int, path: str | None = None
) -> Template:
    """The template resampled to ``spacing`` mm, with its brain mask and crop box."""
    image = ants.image_read(str(path or mni152_path()))
    if spacing and not np.allclose(image.spacing, spacing):
        image = ants.resample_image(image, (spacing,) * 3, use_voxels=False, interp_type=4)
    nifti = ants.to_nibabel_nifti(image)
    mask = template_mask(image.numpy())
    return Template(image, mask, crop_box(mask, crop_shape, multiple), nifti.affine)


def _at_spacing(image: ants.ANTsImage, spacing: float | None) -> ants.ANTsImage:
    if not spacing or np.all(np.asarray(image.spacing) >= spacing):
        return image
    return ants.resample_image(image, (spacing,) * 3, use_voxels=False, interp_type=0)


@dataclass
class Preprocessed:
    """A preprocessed scan on its output grid, with its QC figures and what the QC image shows."""

    brain: np.ndarray  # on the output grid, in the output's voxel order
    mask: np.ndarray
    affine: np.ndarray
    transforms: list[str]
    timing: dict[str, float]
    skull_strip: str  # the method used (``auto`` resolved)
    skull_strip_reason: str
    orientation: str  # the scan's own voxel order, e.g. "LIA", "LIA, oblique 15.0 deg"
    figures: dict[str, float]
    # For the QC image: the scan and its brain mask registered to the full template grid,
    # and the output brain, mask and template in the RAS voxel order.
    registered: np.ndarray
    registered_mask: np.ndarray
    view_brain: np.ndarray
    view_mask: np.ndarray
    view_template: np.ndarray


def _warp(fixed: ants.ANTsImage, moving: ants.ANTsImage, transforms: list[str], interpolator: str,
          inverse: bool = False) -> np.ndarray:
    """Apply ANTs transforms (forward, or the inverse list with its affines inverted) as an array."""
    invert = [name.endswith(".mat") for name in transforms] if inverse else None
    return ants.apply_transforms(fixed, moving, transforms, interpolator=interpolator,
                                 whichtoinvert=invert).numpy()


def _describe_orientation(affine: np.ndarray) -> str:
    angle = obliquity_degrees(affine)
    return axis_codes(affine) + (f", oblique {angle:.1f} deg" if angle > 0.5 else "")


def preprocess_subject(raw_path: str, template: Template, settings: dict, seed: int, work_dir: str,
                       subject: str = "") -> Preprocessed:
    """Reorient, bias-correct, skull-strip, register, measure QC, normalise and crop one raw T1w scan.

    ``settings`` is the validated ``preprocess:`` config section. The scan is
    brought to the RAS voxel order first (:mod:`mrisr.preprocess.orientation`), so that
    every tool sees the orientation it expects. ``output_space: template``
    resamples into the (cropped) template grid that all subjects share;
    ``native`` keeps the scan's own grid, cropped around its brain, in the
    scan's own voxel order and world position.
    """
    subject = subject or raw_path
    timing: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal clock
        timing[step] = time.perf_counter() - clock
        clock = time.perf_counter()

    if settings["registration"] not in REGISTRATIONS:
        raise MrisrError(f"preprocess.registration: unknown {settings['registration']!r}; "
                         f"use one of {sorted(REGISTRATIONS)}")
    output_space = settings["output_space"]
    if output_space not in ("template", "native"):
        raise MrisrError(f"preprocess.output_space: unknown {output_space!r}; use template or native")
    scan = load_volume(raw_path)
    canonical = to_canonical(scan)
    method, reason = decide(canonical, settings["skull_strip"], settings["stripped_max_ml"], background_level=0.0)
    orientation = _describe_orientation(scan.affine)
    log.info("%s: stored %s; skull strip %s (%s)", subject, orientation, method, reason)
    moving = to_ants(canonical)
    lap("load")

    if settings["bias_correction"]:
        coarse = _at_spacing(moving, settings["working_spacing"])
        coarse_mask = coarse.new_image_like((coarse.numpy() != 0) * 1.0) if method == "none" else ants.get_mask(coarse)
        bias = ants.n4_bias_field_correction(coarse, mask=coarse_mask, shrink_factor=4, return_bias_field=True)
        bias = ants.resample_image_to_target(bias, moving, interp_type="linear")
        moving = moving.new_image_like(moving.numpy() / np.clip(bias.numpy(), 1e-3, None))
        lap("bias_correction")

    native_mask = None
    if method == "none":
        native_mask = nonzero_mask(moving.numpy())
    elif method != "template":
        native_mask = brain_mask(ants.to_nibabel_nifti(moving), method, work_dir, seed)
        lap("skull_strip")

    # With a brain mask in hand, register the brain alone: the template has no skull.
    source = moving if native_mask is None else moving * moving.new_image_like(native_mask * 1.0)
    # antspyx ignores a random_seed argument; ANTs reads its sampling seed from the environment.
    # With it (and one ITK thread, see mrisr.workflow) the registration is repeatable; ANTs takes
    # 0 to mean "seed from the clock" (measured: two runs with 0 differ), so seed 0 becomes 1.
    os.environ["ANTS_RANDOM_SEED"] = str(seed or 1)
    working_spacing = settings["working_spacing"]
    result = ants.registration(
        fixed=_at_spacing(template.image, working_spacing), moving=_at_spacing(source, working_spacing),
        type_of_transform=REGISTRATIONS[settings["registration"]],
    )
    forward, inverse = result["fwdtransforms"], result["invtransforms"]
    lap("registration")

    if native_mask is None:  # the template's brain mask, carried onto the scan
        native_mask = _warp(moving, template.image.new_image_like(template.mask * 1.0), inverse, "linear",
                            inverse=True) > 0.5
    registered = _warp(template.image, moving, forward, "linear")
    registered_mask = _warp(template.image, moving.new_image_like(native_mask * 1.0), forward, "linear") > 0.5
    brain_ml = float(native_mask.sum() * np.prod(moving.spacing) / 1000)
    figures = qc.measure(registered_mask, template.mask, brain_ml, registered, template.image.numpy())
    lap("qc")

    if output_space == "template":
        volume = _warp(template.image, moving, forward, "bSpline")
        if method == "template":
            mask = template.mask.copy()
        elif method == "none":  # a stripped scan's non-zero voxels may hold a rim the template brain has not
            mask = template.mask & registered_mask
        else:
            mask = registered_mask
        box, affine = template.box, cropped_affine(template.affine, template.box)
        reference = template.image.numpy()
    else:
        volume, mask = moving.numpy(), native_mask
        box = crop_box(mask, settings["crop_shape"], settings["shape_multiple"])
        affine = cropped_affine(canonical.affine, box)
        reference = _warp(moving, template.image, inverse, "linear", inverse=True)
    mask = crop_or_pad(mask, box)
    brain = normalise_intensity(crop_or_pad(np.clip(volume, 0, None), box), mask)
    view = (brain, mask, crop_or_pad(reference, box))
    if output_space == "native":  # back into the scan's own voxel order
        brain, _ = to_scan_order(brain, affine, scan.affine)
        mask, affine = to_scan_order(mask, affine, scan.affine)
    lap("resample_normalise")
    log.info("%s: %s registration, %s space, QC %s, seconds %s", subject, settings["registration"], output_space,
             {k: round(v, 3) for k, v in figures.items()}, {k: round(v, 1) for k, v in timing.items()})
    return Preprocessed(brain, mask, affine, forward, timing, method, reason, orientation, figures,
                        registered, registered_mask, *view)


def preprocess_to_files(
    raw_path: str, out_brain: str, out_mask: str, out_transform: str, out_timing: str, out_qc: str,
    out_qc_csv: str, log_qc: str, log_qc_csv: str, subject: str, settings: dict, seed: int,
) -> None:
    """The ``preprocess`` stage for one subject: volumes, transform, timing CSV, QC figures and image.

    The QC image and figures are written to ``log_qc`` and ``log_qc_csv`` first,
    pass or fail; the outputs only when the subject passes QC (``settings["qc"]``):
    a failing subject raises :class:`MrisrError` with one line and leaves no output.
    """
    started = time.perf_counter()
    template = load_template(settings["spacing"], settings["crop_shape"], settings["shape_multiple"],
                             settings["template"])
    template_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory(dir=Path(out_brain).parent.resolve()) as work_dir:
        result = preprocess_subject(raw_path, template, settings, seed, work_dir, subject)
        problems = qc.failures(result.figures, settings["qc"])
        qc.qc_figure(result.registered, result.registered_mask, template.mask, result.view_brain, result.view_mask,
                     result.view_template, qc.title_line(subject, result.figures, problems), log_qc)
        timing = {"template": template_seconds, **result.timing}
        record = {"subject": subject, "status": qc.FAILED if problems else qc.PASSED,
                  "orientation": result.orientation, "skull_strip": result.skull_strip,
                  "skull_strip_reason": result.skull_strip_reason, **result.figures,
                  "failed": "; ".join(problems), "qc_image": log_qc,
                  **{f"seconds_{step}": seconds for step, seconds in timing.items()}}
        qc.write_row(record, log_qc_csv)
        qc.check(subject, result.figures, settings["qc"], log_qc)

        save_volume(result.brain, result.affine, out_brain, description="mrisr T1w brain")
        save_volume(result.mask, result.affine, out_mask, dtype=np.uint8, description="mrisr brain mask")
        # ANTs lists the affine last (after any SyN warp): the transform from the scan to the template.
        with atomic_path(out_transform) as tmp:
            shutil.copyfile(result.transforms[-1], tmp)
    for source, target in ((log_qc, out_qc), (log_qc_csv, out_qc_csv)):
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
    with atomic_path(out_timing) as tmp:
        tmp.write_text("subject,step,seconds\n" + "".join(
            f"{subject},{step},{seconds:.2f}\n" for step, seconds in timing.items()))
