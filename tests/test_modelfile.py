"""The model file: round trip, safe loading, one-line errors for foreign, damaged and old files, network units."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from helpers import tiny_config
from mrisr.io import MrisrError
from mrisr.model.modelfile import (
    condition_to_network, image_from_network, load_model, read_model_file, save_model, target_to_network,
)
from mrisr.model.spec import model_spec

SPEC = model_spec(tiny_config({"models": {"triplanar": {"factor": [2, 2, 4]}}}), "triplanar", [1.5] * 3, ["a", "b"],
                  {"git_commit": "abc"})


class Exploit:
    """A pickle that would run code when unpickled."""

    def __reduce__(self):
        import os

        return os.system, ("touch exploit-ran",)


def test_round_trip_keeps_spec_and_weights(tmp_path):
    network = SPEC.build_network()
    save_model(tmp_path / "model.pt", SPEC, network)
    spec, loaded = load_model(tmp_path / "model.pt")
    assert spec == SPEC and spec.step_factor == [2.0, 2.0, 4.0]
    for name, tensor in network.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor)
    assert not loaded.training


def test_a_file_from_before_the_estimate_setting_keeps_estimating_by_the_mean_of_its_samples(tmp_path):
    save_model(tmp_path / "model.pt", replace(SPEC, sampler={"steps": 5, "n_samples": 4}), SPEC.build_network())
    spec, _ = read_model_file(tmp_path / "model.pt")
    assert spec.sampler == {"steps": 5, "n_samples": 4, "estimate": "mean", "flip_axes": [],
                            "consistency_degradation": None}


def test_a_file_from_before_the_flip_axes_setting_keeps_its_left_right_mirroring(tmp_path):
    save_model(tmp_path / "model.pt", replace(SPEC, sampler={"estimate": "one_pass", "mirror_samples": True}),
               SPEC.build_network())
    spec, _ = read_model_file(tmp_path / "model.pt")
    assert spec.sampler == {"estimate": "one_pass", "flip_axes": [0], "consistency_degradation": None}


@pytest.mark.parametrize("content,expected", [
    (b"garbage, not a model", "not an mrisr model file"),
    (None, "model file not found"),
])
def test_foreign_or_missing_files_get_one_line(tmp_path, content, expected):
    path = tmp_path / "model.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(MrisrError, match=expected) as error:
        read_model_file(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_a_file_that_would_run_code_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": "mrisr-model", "payload": Exploit()}, tmp_path / "model.pt")
    with pytest.raises(MrisrError, match="not an mrisr model file"):
        read_model_file(tmp_path / "model.pt")
    assert not (tmp_path / "exploit-ran").exists()


def test_a_model_file_of_the_first_format_asks_to_be_retrained(tmp_path):
    network = SPEC.build_network()
    torch.save({"state_dict": network.state_dict(), "model": {}, "diffusion": {}, "residual_scale": 10.0,
                "factor": [2, 2, 2]}, tmp_path / "old.pt")
    with pytest.raises(MrisrError, match=r"earlier mrisr \(format 1\).*retrain"):
        read_model_file(tmp_path / "old.pt")


def test_weights_that_do_not_fit_are_refused(tmp_path):
    save_model(tmp_path / "model.pt", SPEC, replace(SPEC, kind="diffusion3d").build_network())
    with pytest.raises(MrisrError, match="weights do not fit"):
        load_model(tmp_path / "model.pt")


@pytest.mark.parametrize("residual_scale", [10.0, 0.0])
def test_network_units_round_trip(residual_scale):
    rng = np.random.default_rng(0)
    image, condition = rng.random((4, 4, 4)), rng.random((4, 4, 4))
    target = target_to_network(image, condition, residual_scale)
    np.testing.assert_allclose(image_from_network(target, condition, residual_scale), image)
    np.testing.assert_allclose(condition_to_network(np.array([0.0, 1.0])), [-1.0, 1.0])


def test_a_file_from_before_named_degradations_keeps_its_spline_operator(tmp_path):
    from dataclasses import asdict

    contents = {"format": "mrisr-model", "version": 2, "spec": asdict(SPEC),
                "state_dict": SPEC.build_network().state_dict()}
    del contents["spec"]["training_degradations"]
    contents["spec"]["degradation"] = {"order": 3, "antialias": True, "noise_std": 0.0}
    torch.save(contents, tmp_path / "model.pt")
    spec, _ = read_model_file(tmp_path / "model.pt")
    old = {"operator": "spline", "order": 3, "antialias": True, "noise_std": 0.0}
    assert spec.degradation == old and spec.training_degradations == {"pairs": old}
