"""The quality benchmark: the workflow per fold, every model and baseline scored on held-out subjects only."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from helpers import ONE_MODEL_CONFIG, REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from quality import folds  # noqa: E402

BASELINES = {"nearest", "trilinear", "cubic", "back_projection"}


@pytest.mark.workflow
def test_smoke_benchmark_scores_every_model_and_variant(tmp_path):
    # The core suite, scored from the pairs' own degradation; the tiny workflow run (tests/test_workflow.py)
    # covers every model kind and degradation.
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "quality.py"), "--smoke", "--suite", "core",
                             "--config", str(ONE_MODEL_CONFIG), "--workdir", str(tmp_path)],
                            capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "psnr_brain_vs_back_projection" in result.stdout  # the table
    record = json.loads((tmp_path / "quality.json").read_text())
    methods = {(row["factor"], row["method"]) for row in record["per_subject"]}
    x2 = {"diffusion3d", "regression3d", "diffusion3d_mean", "diffusion3d_unmirrored", "diffusion3d_free",
          "regression3d_free", *BASELINES}
    assert methods == {("2", m) for m in x2}
    for row in record["per_subject"]:
        assert math.isfinite(row["psnr_brain"]) and 0 < row["ssim_brain"] <= 1, row
    split = record["folds"]["config"]
    assert {row["subject"] for row in record["per_subject"]} == set(split["test"])
    assert not set(split["test"]) & set(split["train"] + split["val"])
    assert (tmp_path / "report_config.html").is_file()
    assert record["training_seconds_last_fold"]["diffusion3d"] > 0


def test_leave_one_real_brain_out_holds_out_each_person_with_their_copies():
    config = {"data": {"source": "embedded"}, "split": {
        "train": ["mni152", "mni152def01", "s1"], "val": ["mni152def02"], "test": ["robex", "robexdef01"]}}
    splits = folds(config, "loro")
    assert splits == {
        "without_robex": {"train": ["mni152", "mni152def01", "s1"], "val": ["mni152def02"],
                          "test": ["robex", "robexdef01"]},
        "without_s1": {"train": ["mni152", "mni152def01", "robex", "robexdef01"], "val": ["mni152def02"],
                       "test": ["s1"]},
    }


THICK = {"operator": "slice", "profile": "gaussian", "gap": 0.0, "noise_std": 0.0}


def test_thick_slice_lr_scans_lie_on_their_own_grid_along_the_axis_asked_for(tmp_path):
    import nibabel as nib
    import numpy as np

    from mrisr.grids import lr_affine_for
    from mrisr.io import save_volume
    from thick import eclare_thickness, make_lr, thick_factor

    affine = np.array([[-1.5, 0, 0, 70], [0, 1.5, 0, -90], [0, 0, 1.5, -60], [0, 0, 0, 1]])
    save_volume(np.random.default_rng(0).random((12, 15, 9)).astype(np.float32), affine, tmp_path / "hr.nii.gz")
    for axis, shape in (("x", (4, 15, 9)), ("y", (12, 5, 9)), ("z", (12, 15, 3))):
        lr, factors = make_lr(tmp_path / "hr.nii.gz", axis, 3, THICK, tmp_path / axis / "lr.nii.gz")
        assert factors == thick_factor(axis, 3) and sorted(factors) == [1, 1, 3] and lr.shape == shape
        written = nib.load(tmp_path / axis / "lr.nii.gz")
        np.testing.assert_allclose(written.affine, lr_affine_for(affine, (12, 15, 9), shape), atol=1e-5)
        assert eclare_thickness(shape, (12, 15, 9), THICK) == 3  # FWHM in HR voxels, what ECLARE is told
    assert eclare_thickness((12, 15, 3), (12, 15, 9), {**THICK, "gap": 0.5}) == 1.5


def test_an_estimate_off_the_hr_grid_is_resampled_onto_it_and_one_on_it_is_not():
    import numpy as np
    from scipy.ndimage import gaussian_filter

    from thick import onto_grid

    volume = gaussian_filter(np.random.default_rng(1).random((16, 16, 16)), 2).astype(np.float32)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    same, note = onto_grid(volume, affine, volume.shape, affine)
    assert same is not volume or np.shares_memory(same, volume)
    np.testing.assert_array_equal(same, volume)
    assert note.startswith("on the HR grid")
    # The same image written one voxel further along z, and with a voxel fewer: it comes back where it belongs.
    shifted = np.zeros_like(volume)
    shifted[:, :, 1:] = volume[:, :, :-1]
    shifted_affine = affine.copy()
    shifted_affine[2, 3] -= 1.5
    back, note = onto_grid(shifted[:, :, :15], shifted_affine, volume.shape, affine)
    assert note.startswith("resampled") and back.shape == volume.shape
    np.testing.assert_allclose(back[:, :, :14], volume[:, :, :14], atol=1e-4)


def test_the_thick_table_compares_every_method_with_cubic_and_eclare_per_subject_and_axis():
    import pandas as pd

    from thick import thick_table

    rows = pd.DataFrame([
        {"subject": s, "axis": a, "method": m, "psnr_brain": p + (a == "x"), "ssim_brain": 0.9, "dice_csf": 0.8,
         "dice_gm": 0.7, "dice_wm": 0.9, "seconds": 1.0, "budget": ""}
        for s in ("robex", "s1") for a in ("z", "x") for m, p in (("cubic", 25.0), ("eclare", 26.0), ("model", 27.5))])
    table = thick_table(rows)
    model = table[table["method"] == "model"]
    assert list(model["vs_cubic"]) == [2.5] * 4 and list(model["vs_eclare"]) == [1.5] * 4
    assert table["dice_mean"].round(6).eq(0.8).all()


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_the_thick_figure_shows_the_planes_across_the_thick_axis_and_is_linked_in_markdown(tmp_path, axis):
    import matplotlib.image
    import numpy as np
    import pandas as pd

    from mrisr.figures import comparison_panel, mid_slices, planes_across
    from thick import AXES, figure_links, thick_figure

    # Stripes along the thick axis only: the planes across it show them, the in-plane one is flat.
    stripes = np.moveaxis(np.broadcast_to(np.arange(12) % 2, (10, 11, 12)), 2, AXES[axis]).astype(np.float32)
    slices = mid_slices(stripes)
    factor = [1, 1, 1]
    factor[AXES[axis]] = 3
    assert all(slices[plane].std() > 0 for plane in planes_across(factor)) and len(planes_across(factor)) == 2
    assert slices[AXES[axis]].std() == 0
    hr = np.random.default_rng(0).random((12, 14, 10)).astype(np.float32)
    estimates = {method: np.clip(hr + 0.1 * k, 0, 1) for k, method in
                 enumerate(["cubic", "back_projection", "eclare", "thick3d"])}
    path = thick_figure(hr, estimates, "robex", axis, tmp_path / "thick" / "robex" / axis / "slices.png")
    # The same columns (every image, then every error) in all three planes: one row more.
    every_plane = comparison_panel({"HR": hr, **estimates}, "three planes", str(tmp_path / "three.png"),
                                   maps=[{method: np.abs(estimate - hr) for method, estimate in estimates.items()}])
    two, three = matplotlib.image.imread(path), matplotlib.image.imread(every_plane)
    assert two.shape[1] == three.shape[1] and 0.55 < two.shape[0] / three.shape[0] < 0.75
    rows = pd.DataFrame([{"subject": "robex", "axis": axis, "method": method, "figure": str(path)}
                         for method in ["cubic", *estimates]])
    assert figure_links(rows, tmp_path) == [
        f"![robex, thick along {axis}: slices across the thick axis](thick/robex/{axis}/slices.png)"]


def test_the_thick_suite_plans_its_models_on_thick_slice_pairs(tmp_path):
    import argparse

    import yaml

    from mrisr.config import merge, replace_whole_sections
    from mrisr.workflow import run_workflow
    from quality import SUITES, TINY, fold_overlay, read_yaml, thick_fold_targets

    tiny = read_yaml(TINY)
    base = merge(read_yaml(REPO / "config" / "config.yaml"), tiny)
    replace_whole_sections(base, tiny)
    suite = read_yaml(SUITES)["thick"]
    split = folds(base, "config")["config"]
    overlay = fold_overlay(split, suite, base, argparse.Namespace(steps=None))
    (tmp_path / "thick.yaml").write_text(yaml.safe_dump(overlay))
    result = run_workflow(tmp_path, *thick_fold_targets(split, suite), "--dry-run", "--quiet", "rules",
                          "--configfile", str(TINY), str(tmp_path / "thick.yaml"), cores=1, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    jobs = {line.split()[0]: int(line.split()[1]) for line in result.stdout.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert jobs["train"] == len(suite["models"]) and "evaluate_model" not in jobs and "super_resolve" not in jobs
    # The test subjects are preprocessed too: the suite degrades and scores their brains itself.
    assert jobs["preprocess"] == len({*split["train"], *split["val"], *split["test"]})
