"""Training through torchrun: data-parallel processes, exact resumption after a kill or SIGTERM, a learnable problem."""
from __future__ import annotations

import json
from dataclasses import asdict
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import psutil
import pytest
import torch

from helpers import tiny_config
from mrisr.pairs.synthetic import synthetic_subjects
from mrisr.model.launch import launch, torchrun_command
from mrisr.model.modelfile import read_model_file
from mrisr.model.spec import degradation_of, model_spec
from mrisr.model.training import learning_rate_at

pytestmark = pytest.mark.slow  # torchrun processes

# A small 3D diffusion model: the tiny test config's, with a budget that shows learning in seconds.
SETTINGS = {
    "network": {"attention": False}, "diffusion": {"timesteps": 100},
    "train": {"steps": 160, "patch_size": [16, 16, 16], "learning_rate": 1e-3, "warmup_steps": 5, "ema_decay": 0.99,
              "warm_start_steps": 40, "regression_share": 0.25, "sharpness_augment": [0.8], "checkpoint_every": 20,
              "log_every": 20, "val_every": 40, "device": "cpu"},
}
STEPS = SETTINGS["train"]["steps"]


def make_job(folder, subjects, **train) -> dict:
    config = tiny_config(SETTINGS, {"train": train})
    spec = model_spec(config, "diffusion3d", [1.0] * 3, list(subjects), {"test": "yes"})
    folder.mkdir(parents=True, exist_ok=True)
    return {"name": "test", "spec": asdict(spec), "train_subjects": subjects, "val_subjects": {}, "seed": 11,
            "outputs": {"model": str(folder / "model.pt"), "log": str(folder / "log.csv"),
                        "curves": str(folder / "curves.png"), "checkpoint": str(folder / "checkpoint.pt"),
                        "cache": str(folder / "cache"), "val_cache": str(folder / "val_cache")}}


def weights(job) -> dict[str, torch.Tensor]:
    return read_model_file(job["outputs"]["model"])[1]


@pytest.fixture(scope="module")
def subjects(tmp_path_factory):
    return synthetic_subjects(tmp_path_factory.mktemp("subjects"), degradation_of(tiny_config()))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, subjects):
    folder = tmp_path_factory.mktemp("uninterrupted")
    job = make_job(folder, subjects)
    launch(job, folder / "job.json", 2, 1, str(folder / "train.log"))
    return job, (folder / "train.log").read_text()


def test_two_processes_train_and_only_the_first_logs(uninterrupted):
    job, log = uninterrupted
    assert "2 process(es) on cpu, gloo" in log
    assert "rank 0: pid" in log and "rank 1: pid" in log  # both ranks ran
    assert "rank 1 " not in log.replace("rank 1: pid", "")  # ... and only rank 0 logs
    rows = pd.read_csv(job["outputs"]["log"])
    assert rows["step"].tolist() == list(range(20, 161, 20))
    spec, _ = read_model_file(job["outputs"]["model"])
    assert spec.train["processes"] == 2 and spec.train_subjects == ["s0", "s1"]
    for leftover in ("checkpoint", "cache", "val_cache"):
        assert not os.path.exists(job["outputs"][leftover])  # removed once the model is written


@pytest.mark.parametrize("kill_signal", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "sigterm"])
def test_a_killed_two_process_run_resumes_to_the_same_model(tmp_path, subjects, uninterrupted, kill_signal):
    reference, _ = uninterrupted
    job = make_job(tmp_path, subjects)
    job_path = tmp_path / "job.json"
    job_path.write_text(json.dumps({**job, "threads_per_process": 1}))
    process = subprocess.Popen(torchrun_command(job_path, 2), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    checkpoint = tmp_path / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    # Every process of the job, as Slurm signals them all (torchrun starts its workers in sessions of their own).
    for member in [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]:
        member.send_signal(kill_signal)
    assert process.wait(timeout=120) != 0
    stopped_at = torch.load(checkpoint, weights_only=True)["step"]
    assert 0 < stopped_at < STEPS

    launch(job, job_path, 2, 1, str(tmp_path / "resume.log"))
    assert f"resuming from {checkpoint} at step {stopped_at}" in (tmp_path / "resume.log").read_text()
    resumed, expected = weights(job), weights(reference)
    for name, tensor in expected.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)
    rows, expected_rows = (pd.read_csv(j["outputs"]["log"]).drop(columns="seconds") for j in (job, reference))
    pd.testing.assert_frame_equal(rows, expected_rows, rtol=1e-9)  # the log runs on as if nothing happened


def test_a_checkpoint_of_other_settings_is_not_resumed(tmp_path, subjects):
    job = make_job(tmp_path, subjects, steps=6, checkpoint_every=4, log_every=2, val_every=6)
    torch.save({"digest": "someone else's", "step": 4}, tmp_path / "checkpoint.pt")
    launch(job, tmp_path / "job.json", 1, 1, str(tmp_path / "train.log"))
    log = (tmp_path / "train.log").read_text()
    assert "belongs to other settings" in log and "resuming" not in log
    assert pd.read_csv(job["outputs"]["log"])["step"].tolist() == [2, 4, 6]


def test_training_reduces_the_validation_loss_on_a_learnable_problem(tmp_path, subjects):
    job = make_job(tmp_path, subjects, steps=120, warm_start_steps=0, val_every=10, log_every=10,
                   checkpoint_every=1000, learning_rate=5e-3, sharpness_augment=[])
    launch(job, tmp_path / "job.json", 1, 1, str(tmp_path / "train.log"))
    val_loss = pd.read_csv(job["outputs"]["log"])["val_loss"].tolist()
    assert val_loss[-1] < 0.75 * val_loss[0]  # measured: 0.63


def test_the_launcher_can_be_replaced_for_a_rendezvous_across_nodes(tmp_path, subjects, monkeypatch):
    # What a multi-node recipe sets (README); here one node with an explicit rendezvous endpoint.
    monkeypatch.setenv("MRISR_TORCHRUN", f"{sys.executable} -m torch.distributed.run --nnodes 1 --nproc-per-node 2 "
                                         "--rdzv-backend c10d --rdzv-endpoint localhost:0 --rdzv-id $MRISR_TEST_ID")
    monkeypatch.setenv("MRISR_TEST_ID", "rendezvous-test")
    job = make_job(tmp_path, subjects, steps=4, checkpoint_every=10, log_every=2, val_every=4)
    launch(job, tmp_path / "job.json", 1, 1, str(tmp_path / "train.log"))
    assert "2 process(es) on cpu, gloo" in (tmp_path / "train.log").read_text()


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    settings = {"learning_rate": 1.0, "warmup_steps": 10, "steps": 110}
    assert learning_rate_at(0, settings) == pytest.approx(0.1)
    assert learning_rate_at(10, settings) == pytest.approx(1.0)
    assert learning_rate_at(110, settings) == pytest.approx(0.1)
