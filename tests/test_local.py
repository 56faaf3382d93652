"""The user's own scans: discovery in BIDS and plain folders, header checks, and the seeded split."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mrisr.io import MrisrError
from mrisr.data.local import check_local_files, discover_local
from mrisr.data.split import check_split, seeded_split, without_excluded


def _write(path: Path, shape: tuple[int, ...] = (8, 8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4)), path)
    return path


def test_bids_without_sessions(tmp_path):
    (tmp_path / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.8.0"}')
    first = _write(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    second = _write(tmp_path / "sub-A2" / "anat" / "sub-A2_T1w.nii")
    _write(tmp_path / "sub-01" / "anat" / "sub-01_T2w.nii.gz")  # not a T1w
    _write(tmp_path / "derivatives" / "x" / "sub-01" / "anat" / "sub-01_T1w.nii.gz")  # not raw data
    assert discover_local(str(tmp_path)) == {"01": str(first), "A2": str(second)}


def test_bids_sessions_only_named_where_a_subject_has_several(tmp_path):
    # No dataset_description.json: sub-* folders are enough to recognise BIDS.
    one = _write(tmp_path / "sub-01" / "ses-pre" / "anat" / "sub-01_ses-pre_T1w.nii.gz")
    pre = _write(tmp_path / "sub-02" / "ses-pre" / "anat" / "sub-02_ses-pre_T1w.nii.gz")
    post = _write(tmp_path / "sub-02" / "ses-post" / "anat" / "sub-02_ses-post_run-1_T1w.nii.gz")
    found = discover_local(str(tmp_path))
    assert found == {"01": str(one), "02sespostrun1": str(post), "02sespre": str(pre)}
    assert list(found) == sorted(found)
    assert discover_local(str(tmp_path), subjects=["sub-01", "02sespre"]) == {"01": str(one), "02sespre": str(pre)}


def test_plain_folder_with_pattern(tmp_path):
    first = _write(tmp_path / "sub_01-T1w.nii.gz")
    second = _write(tmp_path / "scan2.nii")
    _write(tmp_path / "._sub_01-T1w.nii.gz")  # macOS resource fork: skipped
    (tmp_path / "notes.txt").write_text("not a scan")
    assert discover_local(str(tmp_path)) == {"scan2": str(second), "sub01T1w": str(first)}
    assert discover_local(str(tmp_path), pattern="*T1w.nii.gz") == {"sub01T1w": str(first)}
    nested = _write(tmp_path / "s03" / "T1.nii.gz")
    assert discover_local(str(tmp_path), pattern="*/T1.nii.gz") == {"s03T1": str(nested)}


def test_subject_selection(tmp_path):
    for name in ("a1", "b2", "c3"):
        _write(tmp_path / f"{name}.nii.gz")
    assert list(discover_local(str(tmp_path), subjects=["c3", "a1"])) == ["a1", "c3"]


def test_missing_folder(tmp_path):
    with pytest.raises(MrisrError, match="not found"):
        discover_local(str(tmp_path / "nowhere"))


def test_nothing_matched_names_folder_and_pattern(tmp_path):
    _write(tmp_path / "scan.nii.gz")
    with pytest.raises(MrisrError, match=r"no scans in .* matching '\*\.mgz'") as error:
        discover_local(str(tmp_path), pattern="*.mgz")
    assert str(tmp_path) in str(error.value)
    (tmp_path / "dataset_description.json").write_text("{}")
    with pytest.raises(MrisrError, match="BIDS"):
        discover_local(str(tmp_path))


def test_duplicate_ids_name_both_files(tmp_path):
    _write(tmp_path / "sub-01.nii.gz")
    _write(tmp_path / "sub_01.nii")
    with pytest.raises(MrisrError, match="'sub01'") as error:
        discover_local(str(tmp_path))
    assert "sub-01.nii.gz" in str(error.value) and "sub_01.nii" in str(error.value)


def test_unknown_subjects_are_listed_with_some_that_exist(tmp_path):
    for index in range(8):
        _write(tmp_path / f"s{index}.nii.gz")
    with pytest.raises(MrisrError, match=r"not found in .*: x9, y9; found 8 subject\(s\): s0, s1, s2, s3, s4, \.\.\."):
        discover_local(str(tmp_path), subjects=["s1", "x9", "y9"])


def test_check_local_files(tmp_path):
    good = _write(tmp_path / "good.nii.gz")
    trailing = _write(tmp_path / "trailing.nii.gz", (8, 8, 8, 1))
    check_local_files({"good": str(good), "trailing": str(trailing)})

    series = _write(tmp_path / "series.nii.gz", (8, 8, 8, 2))
    with pytest.raises(MrisrError, match=r"series\.nii\.gz \(subject series\): expected a 3D volume"):
        check_local_files({"good": str(good), "series": str(series)})

    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(MrisrError, match=r"corrupt\.nii\.gz .*not a readable NIfTI") as error:
        check_local_files({"corrupt": str(corrupt), "good": str(good)})
    assert "\n" not in str(error.value)


def test_seeded_split_is_deterministic_disjoint_and_complete():
    subjects = [f"s{index:02d}" for index in range(20)]
    split = seeded_split(subjects, val=3, test=4, seed=7)
    assert split == seeded_split(list(reversed(subjects)), val=3, test=4, seed=7)  # order does not matter
    assert [len(split[part]) for part in ("train", "val", "test")] == [13, 3, 4]
    assert sorted(split["train"] + split["val"] + split["test"]) == subjects
    assert split != seeded_split(subjects, val=3, test=4, seed=8)


def test_seeded_split_fractions():
    subjects = [f"s{index}" for index in range(10)]
    split = seeded_split(subjects, val=0.2, test=0.25, seed=0)
    assert (len(split["val"]), len(split["test"]), len(split["train"])) == (2, 3, 5)  # 2.5 rounds up
    assert len(seeded_split(subjects, val=0.01, test=0.01, seed=0)["test"]) == 1  # a positive fraction gives >= 1
    assert seeded_split(subjects, val=0, test=1, seed=0)["val"] == []


@pytest.mark.parametrize("subjects, val, test, match", [
    (["a", "b"], 1, 1, "too few"),
    (["a"], 0, 1, "too few"),
    (["a", "b", "c"], 0, 0, "at least 1"),
    (["a", "b", "c"], 0, 1.0, "below 1"),
    (["a", "b", "c"], -1, 1, ">= 0"),
    (["a", "a", "b"], 0, 1, "twice"),
])
def test_seeded_split_errors(subjects, val, test, match):
    with pytest.raises(MrisrError, match=match):
        seeded_split(subjects, val=val, test=test, seed=0)


def test_split_must_name_existing_subjects():
    with pytest.raises(MrisrError, match=r"split\.test: unknown subject\(s\) sub99"):
        check_split({"train": ["a"], "val": [], "test": ["sub99"]}, ["a", "b"])


def test_split_roles_must_not_overlap():
    with pytest.raises(MrisrError, match=r"a in both split\.train and split\.test"):
        check_split({"train": ["a"], "val": [], "test": ["a"]}, ["a", "b"])


def test_excluded_subjects_leave_explicit_and_seeded_splits():
    split, subjects = without_excluded({"train": ["a", "b"], "val": ["c"], "test": ["d"]}, list("abcd"), ["b"])
    assert split == {"train": ["a"], "val": ["c"], "test": ["d"]} and subjects == ["a", "c", "d"]
    split, subjects = without_excluded({"random": {"test": 1}}, list("abcd"), ["a", "d"])
    assert split == {"random": {"test": 1}} and subjects == ["b", "c"]
    with pytest.raises(MrisrError, match="preprocess.exclude: unknown subject"):
        without_excluded({"random": {"test": 1}}, list("abcd"), ["e"])
