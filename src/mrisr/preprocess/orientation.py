"""One voxel order for every scan: the closest to RAS, with any obliquity kept in the affine.

Scans arrive stored LIA (FreeSurfer), LPS (many DICOM converters), LAS, RAS,
or oblique. Tools that look at the voxel array rather than the world
coordinates (ROBEX fits its shape model in voxel space, ANTs initialises a
registration by centres of mass) go wrong on an unexpected voxel order: on
FreeSurfer's LIA the face and neck land where a brain is expected. So every
scan is permuted and flipped to the RAS voxel order first (no resampling, so
no loss); a rotation that is not a multiple of 90 degrees stays in the affine,
where ANTs takes it into account. Results that go back to the scan's own grid
are reordered with :func:`to_scan_order`.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel import orientations

RAS = orientations.axcodes2ornt(("R", "A", "S"))


def axis_codes(affine: np.ndarray) -> str:
    """The voxel order of ``affine`` as three letters, e.g. ``LIA`` (the closest one for oblique affines)."""
    return "".join(nib.aff2axcodes(affine))


def obliquity_degrees(affine: np.ndarray) -> float:
    """Largest angle between a voxel axis and the world axis it is closest to (0 for a plain RAS/LIA/... grid)."""
    directions = np.asarray(affine)[:3, :3] / np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    cosines = np.abs(directions).max(axis=0).clip(-1, 1)
    return float(np.degrees(np.arccos(cosines)).max())


def to_canonical(image: nib.Nifti1Image) -> nib.Nifti1Image:
    """``image`` with its voxels permuted and flipped to the RAS order; the world position is unchanged."""
    return nib.as_closest_canonical(image)


def to_scan_order(
    data: np.ndarray, canonical_affine: np.ndarray, scan_affine: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """A volume on a (possibly cropped) canonical grid, reordered into the voxel order of the original scan.

    Returns the array and its affine; on the full grid they are the scan's own
    array order and affine.
    """
    back = orientations.ornt_transform(RAS, orientations.io_orientation(scan_affine))
    reordered = orientations.apply_orientation(np.asarray(data), back)
    return reordered, canonical_affine @ orientations.inv_ornt_aff(back, np.shape(data))


def canonical_grid(shape: tuple[int, ...], affine: np.ndarray) -> tuple[tuple[int, ...], np.ndarray]:
    """The shape and affine a grid has once its voxels are in the RAS order (as :func:`to_canonical` makes them)."""
    transform = orientations.ornt_transform(orientations.io_orientation(affine), RAS)
    new_shape = tuple(int(shape[int(axis)]) for axis in np.argsort(transform[:, 0]))
    return new_shape, np.asarray(affine) @ orientations.inv_ornt_aff(transform, shape)
