"""Native-space skull stripping: the `auto` decision, tool checks and the nipype plumbing.

ROBEX itself runs in tests/test_preprocess.py, on its reference head in five orientations.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml
from scipy import ndimage

from mrisr.data import registry
from mrisr.data.embedded import mni152_path, robex_head_path
from mrisr.io import MrisrError, load_volume
from mrisr.preprocess.skullstrip import SKULL_STRIP_METHODS, brain_mask, decide, foreground, missing_tool

STRIPPED_MAX_ML = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "config.yaml").read_text())[
    "preprocess"]["stripped_max_ml"]


def test_methods_listed():
    assert SKULL_STRIP_METHODS == ("auto", "template", "robex", "atlas", "bet", "synthstrip", "none")


@pytest.mark.parametrize("method", ["auto", "template", "none", "robex", "atlas"])
def test_available_methods_need_nothing_else(method):
    assert missing_tool(method) is None


def zero_background(image: nib.Nifti1Image) -> nib.Nifti1Image:
    """The head as FreeSurfer stores it: everything outside the head set to exactly zero."""
    volume = image.get_fdata(dtype=np.float32)
    return nib.Nifti1Image(np.where(foreground(volume), volume, 0), image.affine)


def test_auto_takes_a_stripped_template_for_stripped():
    method, reason = decide(load_volume(mni152_path()), "auto", STRIPPED_MAX_ML, background_level=0.0)
    assert method == "none" and reason.startswith("auto: already skull-stripped: foreground 18")


def test_auto_strips_heads_whatever_their_background():
    head = load_volume(robex_head_path())
    method, reason = decide(head, "auto", STRIPPED_MAX_ML, background_level=0.0)
    assert method == "robex" and reason.startswith("auto: a head: foreground 3")
    # A zeroed background (FreeSurfer) fooled the old rule (over 40 % exact zeros = stripped); the size does not lie.
    zeroed = zero_background(head)
    assert np.mean(zeroed.get_fdata() == 0) > 0.4
    method, reason = decide(zeroed, "auto", STRIPPED_MAX_ML, background_level=0.0)
    assert method == "robex" and re.search(r"(9\d|100) % of the voxels around it exactly zero", reason)


def test_auto_strips_pycortex_s1_as_stored():
    try:
        path = registry.volume_path("s1")
    except MrisrError as error:
        pytest.skip(str(error))
    method, reason = decide(load_volume(path), "auto", STRIPPED_MAX_ML, background_level=0.0)
    assert method == "robex" and reason.startswith("auto: a head: foreground 4")


def test_an_explicit_method_is_obeyed():
    assert decide(load_volume(mni152_path()), "robex", STRIPPED_MAX_ML, background_level=0.0) == (
        "robex", "as set")


@pytest.mark.parametrize("method, tool", [("bet", "bet"), ("synthstrip", "mri_synthstrip")])
def test_missing_tool_names_the_tool(method, tool, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing installed here
    message = missing_tool(method)
    assert message is not None and f"`{tool}`" in message and "\n" not in message
    with pytest.raises(MrisrError, match=tool):
        brain_mask(_sphere_image(), method, tmp_path)


def test_unknown_method_is_refused(tmp_path):
    assert "unknown" in missing_tool("hd-bet")
    with pytest.raises(MrisrError, match="unknown"):
        brain_mask(_sphere_image(), "hd-bet", tmp_path)
    with pytest.raises(MrisrError, match="template"):
        brain_mask(_sphere_image(), "template", tmp_path)
    with pytest.raises(MrisrError, match="auto is not a tool"):
        brain_mask(_sphere_image(), "auto", tmp_path)


def test_none_keeps_nonzero_voxels_and_fills_holes(tmp_path):
    image = _sphere_image()
    volume = np.asarray(image.dataobj)
    mask = brain_mask(image, "none", tmp_path)
    assert mask.dtype == bool and mask.shape == volume.shape
    assert mask[volume > 0].all()
    assert mask[12, 12, 12]  # the zero-valued "ventricle" inside the brain
    assert not mask[0, 0, 0] and mask.sum() == ndimage.binary_fill_holes(volume > 0).sum()


def _sphere_image(shape: int = 24) -> nib.Nifti1Image:
    """A bright ball on an exactly-zero background, with a zero hole in its centre."""
    grid = np.indices((shape,) * 3) - shape / 2
    radius = np.sqrt((grid ** 2).sum(axis=0))
    volume = np.where(radius < shape / 3, 100.0, 0.0).astype(np.float32)
    volume[radius < 2] = 0
    return nib.Nifti1Image(volume, np.diag([2.0, 2.0, 2.0, 1.0]))


# Stand-ins for FSL's bet and FreeSurfer's mri_synthstrip: they check the nipype plumbing
# (command line, PATH lookup, output names, error reporting) where the real tools are not installed.
FAKE_BET = """\
import sys, nibabel as nib, numpy as np
image = nib.load(sys.argv[1])
out = sys.argv[2].removesuffix(".nii.gz")
nib.save(nib.Nifti1Image((np.asarray(image.dataobj) > 0).astype(np.uint8), image.affine), out + "_mask.nii.gz")
"""
FAKE_SYNTHSTRIP = """\
import sys, nibabel as nib, numpy as np
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
image = nib.load(args["-i"])
nib.save(nib.Nifti1Image((np.asarray(image.dataobj) > 0).astype(np.uint8), image.affine), args["-m"])
"""
FAILING_TOOL = """\
import sys
print("reading input", file=sys.stderr)
print("ERROR: could not allocate 4 GB", file=sys.stderr)
sys.exit(3)
"""


def _install(folder: Path, name: str, source: str) -> None:
    script = folder / name
    script.write_text(f"#!{sys.executable}\n{source}")
    script.chmod(0o755)


@pytest.mark.parametrize("method, tool, source", [("bet", "bet", FAKE_BET),
                                                  ("synthstrip", "mri_synthstrip", FAKE_SYNTHSTRIP)])
def test_external_tools_run_through_nipype(method, tool, source, tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _install(bin_dir, tool, source)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert missing_tool(method) is None
    image = _sphere_image()
    mask = brain_mask(image, method, tmp_path / "work")
    assert mask.dtype == bool and mask.shape == image.shape
    assert np.array_equal(mask, np.asarray(image.dataobj) > 0)
    assert list((tmp_path / "work").iterdir()) == []  # the scratch copy is gone


def test_tool_failure_names_method_and_last_error_line(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _install(bin_dir, "bet", FAILING_TOOL)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    with pytest.raises(MrisrError, match=r"bet failed: ERROR: could not allocate 4 GB \(exit code 3\)") as error:
        brain_mask(_sphere_image(), "bet", tmp_path / "work")
    assert "\n" not in str(error.value)
