"""Reading and writing NIfTI volumes with clear errors and atomic writes.

Every stage reads its inputs through :func:`load_volume` so that a corrupt,
missing or non-3D file stops the run with one line that names the file, and
writes through :func:`save_volume` so that a crash never leaves a truncated
file that Snakemake would take for a finished output.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import nibabel as nib
import numpy as np


class MrisrError(Exception):
    """An error caused by the user's input or configuration, shown without a traceback."""


def exit_status(run: Callable[[], object]) -> int:
    """A command's exit status: 0 after ``run()``, or 1 with the :class:`MrisrError` as one line on stderr."""
    try:
        run()
    except MrisrError as error:
        print(f"mrisr: error: {error}", file=sys.stderr)
        return 1
    return 0


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real suffixes so writers that look at the name (nibabel, matplotlib) still work.
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name.split('.')[0]}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates owner-only files; give the result the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def load_volume(path: str | os.PathLike, dtype: type = np.float32) -> nib.Nifti1Image:
    """Load a 3D NIfTI image as ``dtype``, squeezing trailing length-1 axes.

    Raises :class:`MrisrError` naming the file when it is missing, unreadable,
    or not a single 3D volume.
    """
    path = Path(path)
    if not path.is_file():
        raise MrisrError(f"{path}: file not found")
    try:
        image = nib.load(path)
        data = np.asarray(image.dataobj, dtype=dtype)
    except Exception as error:  # nibabel raises many kinds of errors for broken files
        raise MrisrError(
            f"{path}: not a readable NIfTI image ({type(error).__name__}: {error}); "
            "check that the file is complete and not corrupted"
        ) from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise MrisrError(
            f"{path}: expected a 3D volume, got shape {tuple(image.shape)}; "
            "give one T1-weighted volume per file"
        )
    if not np.all(np.isfinite(data)):
        raise MrisrError(f"{path}: contains NaN or infinite values")
    return nib.Nifti1Image(data, image.affine, header=_header_3d(image))


def _header_3d(image: nib.spatialimages.SpatialImage) -> nib.Nifti1Header:
    """A NIfTI header keeping the image's qform/sform codes, without its 4th dimension."""
    header = nib.Nifti1Header()
    if isinstance(image.header, nib.Nifti1Header):
        header.set_qform(image.affine, int(image.header["qform_code"]) or 1)
        header.set_sform(image.affine, int(image.header["sform_code"]) or 1)
    return header


def save_volume(
    data: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    dtype: type = np.float32,
    description: str = "",
) -> Path:
    """Write ``data`` with ``affine`` to ``path`` atomically; returns the path."""
    image = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    image.header.set_qform(affine, 1)
    image.header.set_sform(affine, 1)
    image.header.set_xyzt_units("mm")
    if description:
        image.header["descrip"] = description[:79].encode()
    with atomic_path(path) as tmp:
        nib.save(image, tmp)
    return Path(path)


def write_json(obj: object, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    return Path(path)
