"""Bad input gets one clear line naming the file; writes are atomic."""
import gzip

import nibabel as nib
import numpy as np
import pytest

from mrisr.io import MrisrError, atomic_path, load_volume, save_volume


def test_missing_file(tmp_path):
    with pytest.raises(MrisrError, match=r"missing\.nii\.gz: file not found"):
        load_volume(tmp_path / "missing.nii.gz")


def test_corrupt_nifti_names_the_file(tmp_path):
    path = tmp_path / "corrupt.nii.gz"
    save_volume(np.random.default_rng(0).random((16, 16, 16)), np.eye(4), path)
    path.write_bytes(path.read_bytes()[:2000])  # a truncated download
    with pytest.raises(MrisrError, match=r"corrupt\.nii\.gz: not a readable NIfTI image"):
        load_volume(path)
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(gzip.compress(b"this is not an image"))
    with pytest.raises(MrisrError, match=r"garbage\.nii\.gz: not a readable NIfTI"):
        load_volume(garbage)


def test_4d_nifti_is_rejected_with_its_shape(tmp_path):
    path = tmp_path / "bold.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 3), np.float32), np.eye(4)), path)
    with pytest.raises(MrisrError, match=r"bold\.nii\.gz: expected a 3D volume, got shape \(8, 8, 8, 3\)"):
        load_volume(path)


def test_trailing_length_one_axis_is_squeezed(tmp_path):
    path = tmp_path / "head.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 8, 1), np.float32), np.diag([1.5, 1.5, 1.5, 1])), path)
    image = load_volume(path)
    assert image.shape == (8, 8, 8)
    np.testing.assert_allclose(image.header.get_zooms(), (1.5, 1.5, 1.5))


def test_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_saved_volume_keeps_affine_and_normal_permissions(tmp_path):
    affine = np.array([[-1.5, 0, 0, 90], [0, 1.5, 0, -120], [0, 0, 1.5, -70], [0, 0, 0, 1]])
    path = save_volume(np.zeros((4, 4, 4)), affine, tmp_path / "x.nii.gz")
    np.testing.assert_allclose(nib.load(path).affine, affine)
    assert path.stat().st_mode & 0o044  # readable by others, not mkstemp's 0600
