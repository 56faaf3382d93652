"""Reorienting to the RAS voxel order and back: nothing resampled, nothing moved in the world."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from helpers import rotation, stored_as
from mrisr.preprocess.orientation import axis_codes, obliquity_degrees, to_canonical, to_scan_order


@pytest.fixture
def image() -> nib.Nifti1Image:
    rng = np.random.default_rng(0)
    return nib.Nifti1Image(rng.random((7, 9, 11)).astype(np.float32),
                           np.array([[1.5, 0, 0, -5], [0, 1.2, 0, 3], [0, 0, 2, 7], [0, 0, 0, 1]]))


@pytest.mark.parametrize("codes", ["RAS", "LAS", "LIA", "LPS", "PIR", "ASL"])
def test_every_storage_order_becomes_the_same_ras_volume(image, codes):
    variant = stored_as(image, codes)
    assert axis_codes(variant.affine) == codes
    canonical = to_canonical(variant)
    assert axis_codes(canonical.affine) == "RAS"
    np.testing.assert_array_equal(np.asarray(canonical.dataobj), np.asarray(image.dataobj))
    np.testing.assert_allclose(canonical.affine, image.affine)


@pytest.mark.parametrize("codes", ["LAS", "LIA", "LPS", "PIR"])
def test_results_go_back_to_the_scan_order_and_world_position(image, codes):
    scan = stored_as(image, codes)
    canonical = to_canonical(scan)
    data, affine = to_scan_order(np.asarray(canonical.dataobj), canonical.affine, scan.affine)
    np.testing.assert_array_equal(data, np.asarray(scan.dataobj))
    np.testing.assert_allclose(affine, scan.affine)

    # A crop of the canonical grid keeps every voxel's world position in the scan's order.
    shift = np.eye(4)
    shift[:3, 3] = [1, 2, 3]
    crop = np.asarray(canonical.dataobj)[1:5, 2:8, 3:10]
    data, affine = to_scan_order(crop, canonical.affine @ shift, scan.affine)
    assert axis_codes(affine) == codes
    for index in np.ndindex(*data.shape):
        world = affine @ [*index, 1]
        original = np.round(np.linalg.solve(image.affine, world)[:3]).astype(int)
        assert data[index] == np.asarray(image.dataobj)[tuple(original)]


def test_oblique_scans_keep_their_rotation_in_the_affine(image):
    lia = stored_as(image, "LIA")
    oblique = nib.Nifti1Image(np.asarray(lia.dataobj), rotation(15, 12) @ lia.affine)
    assert obliquity_degrees(image.affine) == 0
    assert 15 < obliquity_degrees(oblique.affine) < 20
    canonical = to_canonical(oblique)
    assert axis_codes(canonical.affine) == "RAS"
    assert obliquity_degrees(canonical.affine) == pytest.approx(obliquity_degrees(oblique.affine))
    np.testing.assert_array_equal(np.asarray(canonical.dataobj), np.asarray(image.dataobj))  # reordered, not resampled
    data, affine = to_scan_order(np.asarray(canonical.dataobj), canonical.affine, oblique.affine)
    np.testing.assert_array_equal(data, np.asarray(oblique.dataobj))
    np.testing.assert_allclose(affine, oblique.affine)
