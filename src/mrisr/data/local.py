"""The user's own scans (``data.source: local``): finding them, naming subjects, importing them.

Subject IDs become path components and Snakemake wildcards, so they are
reduced to letters and digits. Files are only listed here; reading them is
left to :func:`mrisr.io.load_volume` at fetch time, except for the quick
header check in :func:`check_local_files` that lets the workflow fail before
any job starts.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import nibabel as nib
import numpy as np

from ..grids import voxel_sizes
from ..io import MrisrError, load_volume, save_volume, write_json
from .embedded import kind_of

# BIDS T1w scans, with or without a session level.
BIDS_PATTERNS = ("sub-*/anat/sub-*_T1w.nii*", "sub-*/ses-*/anat/sub-*_T1w.nii*")
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_SHOWN = 5  # how many existing subjects an error message lists

log = logging.getLogger(__name__)


def is_bids(folder: Path) -> bool:
    """A BIDS dataset has ``dataset_description.json`` or ``sub-*`` folders at its top."""
    return (folder / "dataset_description.json").is_file() or any(
        child.is_dir() for child in folder.glob("sub-*"))


def discover_local(path: str, pattern: str = "*.nii*", subjects: list[str] | None = None, section: str = "data.local"
                   ) -> dict[str, str]:
    """Subject ID -> scan path for the T1w scans under ``path``, sorted by ID.

    BIDS dataset: ``sub-*/[ses-*/]anat/sub-*_T1w.nii[.gz]``; the ID is the
    subject label (``sub-01`` -> ``01``). When a subject has several T1w scans
    (sessions, runs, acquisitions), each ID is the subject label followed by the
    scan's other entities without dashes (``sub-01_ses-02_run-1_T1w`` -> ``01ses02run1``).

    Plain folder: the files matching ``pattern`` (relative to ``path``; ``**``
    recurses); the ID is the file's path below ``path`` without ``.nii[.gz]``,
    letters and digits only (``sub_01-T1w.nii.gz`` -> ``sub01T1w``,
    ``s01/T1.nii`` -> ``s01T1``). Hidden files are skipped.

    ``subjects`` keeps only those IDs; a requested ID may also be written as
    the BIDS label (``sub-01``) or the file name (``sub_01-T1w``). Messages
    name the config ``section`` the folder came from (``data.local`` or ``apply``).
    """
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise MrisrError(f"{section}.path: folder {folder} not found")
    if is_bids(folder):
        files = _bids_scans(folder, section)
        tried = " or ".join(BIDS_PATTERNS) + " (BIDS dataset)"
    else:
        files = _plain_scans(folder, pattern, section)
        tried = repr(pattern)
    if not files:
        raise MrisrError(f"{section}: no scans in {folder} matching {tried}; "
                         f"set {section}.pattern to match your file names")
    if subjects is not None:
        files = _select(files, subjects, folder, section)
    return dict(sorted(files.items()))


def _bids_scans(folder: Path, section: str) -> dict[str, str]:
    """ID -> path for the T1w scans of a BIDS dataset."""
    by_subject: dict[str, list[Path]] = {}
    for pattern in BIDS_PATTERNS:
        for scan in folder.glob(pattern):
            if scan.is_file() and scan.name.endswith(("_T1w.nii", "_T1w.nii.gz")):
                by_subject.setdefault(scan.parts[len(folder.parts)], []).append(scan)
    files: dict[str, str] = {}
    for subject_folder, scans in sorted(by_subject.items()):
        label = _alphanumeric(subject_folder.removeprefix("sub-"))
        for scan in sorted(scans):
            if len(scans) == 1:
                subject = label
            else:
                # The entities between sub-<label> and _T1w tell a subject's scans apart.
                entities = _strip_nifti(scan.name).removesuffix("_T1w").split("_")[1:]
                subject = label + "".join(_alphanumeric(entity) for entity in entities)
            _add(files, subject, scan, section)
    return files


def _plain_scans(folder: Path, pattern: str, section: str) -> dict[str, str]:
    """ID -> path for the files matching ``pattern`` in a plain folder."""
    files: dict[str, str] = {}
    for scan in sorted(folder.glob(pattern)):
        relative = scan.relative_to(folder)
        # Skip editor, OS and macOS resource-fork files (._scan.nii.gz) and hidden folders.
        if not scan.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        _add(files, _alphanumeric(_strip_nifti(str(relative))), scan, section)
    return files


def _add(files: dict[str, str], subject: str, scan: Path, section: str) -> None:
    """Record ``scan`` under ``subject``, refusing empty and duplicate IDs."""
    if not subject:
        raise MrisrError(f"{section}: cannot make a subject ID from {scan}; "
                         "rename it so that its name contains letters or digits")
    if subject in files:
        raise MrisrError(f"{section}: subject ID {subject!r} given by two files, {files[subject]} and {scan}; "
                         f"rename one or narrow {section}.pattern")
    files[subject] = str(scan)


def _select(files: dict[str, str], subjects: list[str], folder: Path, section: str) -> dict[str, str]:
    """The entries of ``files`` named in ``subjects`` (IDs, BIDS labels or file names)."""
    selected: dict[str, str] = {}
    missing = []
    for requested in subjects:
        candidates = (_alphanumeric(str(requested)), _alphanumeric(str(requested).removeprefix("sub-")))
        subject = next((candidate for candidate in candidates if candidate in files), None)
        if subject is None:
            missing.append(str(requested))
        else:
            selected[subject] = files[subject]
    if missing:
        known = sorted(files)
        shown = ", ".join(known[:_SHOWN]) + (", ..." if len(known) > _SHOWN else "")
        raise MrisrError(f"{section}.subjects: not found in {folder}: {', '.join(missing)}; "
                         f"found {len(known)} subject(s): {shown}")
    return selected


def _strip_nifti(name: str) -> str:
    for suffix in _NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _alphanumeric(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", text)


def check_local_files(files: dict[str, str]) -> None:
    """Raise :class:`MrisrError` naming the first file that is not a 3D NIfTI image.

    Reads headers only, so it is fast enough to run at workflow start-up.
    Trailing length-1 axes are allowed, as :func:`mrisr.io.load_volume` drops them.
    """
    for subject, path in files.items():
        try:
            image = nib.load(path)
            shape = tuple(image.shape)
        except Exception as error:  # nibabel raises many kinds of errors for broken files
            raise MrisrError(f"{path} (subject {subject}): not a readable NIfTI image "
                             f"({type(error).__name__}: {error}); check that the file is complete") from None
        if not isinstance(image, nib.Nifti1Image):  # Nifti2Image is a subclass
            raise MrisrError(f"{path} (subject {subject}): a {type(image).__name__}, not a NIfTI image; "
                             "convert it to .nii.gz")
        while len(shape) > 3 and shape[-1] == 1:
            shape = shape[:-1]
        if len(shape) != 3:
            raise MrisrError(f"{path} (subject {subject}): expected a 3D volume, got shape {tuple(image.shape)}; "
                             "give one T1-weighted volume per file")


def import_scan(scan_path: str, out_path: str, **origin: object) -> dict:
    """Validate a scan (3D NIfTI) and write it as the raw T1w, float32, with a sidecar of its ``origin``.

    The scan keeps its own voxel order and affine (preprocessing reorients a copy).
    """
    image = load_volume(scan_path)
    save_volume(image.get_fdata(dtype=np.float32), image.affine, out_path)
    sidecar = {**origin, "kind": kind_of(bool(origin.get("real_person"))), "file": str(Path(scan_path).resolve()),
               "derived": False, "shape": list(image.shape),
               "voxel_mm": voxel_sizes(image.affine).round(3).tolist(),
               "orientation": "".join(nib.aff2axcodes(image.affine))}
    write_json(sidecar, Path(out_path).with_name("T1w.json"))
    log.info("imported %s: shape %s, voxels %s mm", scan_path, sidecar["shape"], sidecar["voxel_mm"])
    return sidecar
