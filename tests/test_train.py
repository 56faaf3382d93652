"""Training resumes exactly from a checkpoint after an interruption (preemption, time limit)."""
import signal

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

import mrisr.train as training
from mrisr.train import (
    Pair,
    TrainSettings,
    blurred_copies,
    make_pair,
    scale_intensity,
    train,
)

MODEL = {"base_channels": 8, "channel_mult": [1, 2], "attention": False}
DIFFUSION = {"schedule": "cosine", "timesteps": 100, "prediction": "x0"}


def synthetic_pair(seed: int) -> Pair:
    rng = np.random.default_rng(seed)
    hr = gaussian_filter(rng.random((24, 24, 24)), 1).astype(np.float32) * 4
    condition = gaussian_filter(hr, 1.5)  # a blurred scan: the residual is learnable from it
    mask = hr > np.median(hr)
    return Pair(f"s{seed}", (hr - condition) * 10, condition * 2 - 1, mask)


SETTINGS = TrainSettings(steps=8, batch_size=2, patch_size=(16, 16, 16), warm_start_steps=2, warmup_steps=2,
                         intensity_augment=0.1, checkpoint_every=4, log_every=2, val_every=4, seed=3, device="cpu")


def kill_kinds():
    def raise_interrupt():
        raise KeyboardInterrupt("the job was killed")

    def send_sigterm():
        signal.raise_signal(signal.SIGTERM)  # what Slurm sends before a time limit or preemption

    # (what happens during step 5, what train() then raises, the step the checkpoint holds)
    return [(raise_interrupt, KeyboardInterrupt, 4), (send_sigterm, SystemExit, 5)]


@pytest.mark.parametrize("interrupt,raised,checkpoint_step", kill_kinds(), ids=["killed", "sigterm"])
def test_interrupted_training_resumes_to_the_same_model(tmp_path, monkeypatch, interrupt, raised, checkpoint_step):
    pairs = [synthetic_pair(0), synthetic_pair(1)]
    reference, reference_rows = train(pairs, pairs[1:], MODEL, DIFFUSION, SETTINGS, tmp_path / "a.pt", "d",
                                      residual_target=True)

    calls = {"n": 0}
    original = training.sample_patches

    def interrupted_during_step_five(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:  # call 1 draws the fixed validation patches
            interrupt()
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "sample_patches", interrupted_during_step_five)
    with pytest.raises(raised):
        train(pairs, pairs[1:], MODEL, DIFFUSION, SETTINGS, tmp_path / "b.pt", "d", residual_target=True)
    # A kill loses the steps since the periodic checkpoint (4); SIGTERM checkpoints the step it finished.
    assert torch.load(tmp_path / "b.pt", weights_only=False)["step"] == checkpoint_step
    monkeypatch.setattr(training, "sample_patches", original)
    resumed, rows = train(pairs, pairs[1:], MODEL, DIFFUSION, SETTINGS, tmp_path / "b.pt", "d", residual_target=True)

    for name, tensor in reference.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, msg=name)
    assert [row["step"] for row in rows] == [row["step"] for row in reference_rows] == [2, 4, 6, 8]
    assert [row["loss"] for row in rows] == pytest.approx([row["loss"] for row in reference_rows])


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    pairs = [synthetic_pair(0)]
    train(pairs, [], MODEL, DIFFUSION, TrainSettings(**{**SETTINGS.__dict__, "steps": 5}), tmp_path / "c.pt", "old",
          residual_target=True)
    assert torch.load(tmp_path / "c.pt", weights_only=False)["step"] == 4
    _, rows = train(pairs, [], MODEL, DIFFUSION, SETTINGS, tmp_path / "c.pt", "new", residual_target=True)
    assert rows[0]["step"] == 2  # started afresh


def test_training_reduces_the_loss_on_a_learnable_problem(tmp_path):
    pairs = [synthetic_pair(0), synthetic_pair(1)]
    settings = TrainSettings(**{**SETTINGS.__dict__, "steps": 60, "warm_start_steps": 0, "log_every": 10,
                                "val_every": 10, "learning_rate": 2e-3, "checkpoint_every": 1000})
    _, rows = train(pairs, pairs, MODEL, DIFFUSION, settings, tmp_path / "d.pt", "d", residual_target=True)
    predict_zero = np.mean([np.mean(pair.target[pair.mask] ** 2) for pair in pairs])  # the untrained model
    assert rows[-1]["val_loss"] < 0.6 * predict_zero


def test_blurred_copies_are_softer_pairs_degraded_like_the_real_ones():
    rng = np.random.default_rng(0)
    hr = gaussian_filter(rng.random((24, 24, 24)), 1).astype(np.float32)
    mask = np.ones(hr.shape, bool)
    degradation = {"factor": 2, "order": 3, "antialias": True, "noise_std": 0.0}
    copies = blurred_copies(hr, mask, "s", [0.5, 1.0], degradation, 10.0, seed=0)
    assert [pair.subject for pair in copies] == ["s_blur0.5", "s_blur1"]
    original = make_pair("s", hr, hr[::2, ::2, ::2], mask, 10.0)
    # HR = interpolation + residual / scale; blurring leaves less detail for the model to add.
    detail = [np.std(pair.target) for pair in (original, *copies)]
    assert detail[0] > detail[1] > detail[2] > 0
    restored = (copies[0].condition + 1) / 2 + copies[0].target / 10
    np.testing.assert_allclose(restored, gaussian_filter(hr, 0.5), atol=1e-5)


@pytest.mark.parametrize("residual", [True, False])
def test_intensity_scaling_scales_the_hr_and_its_interpolation_alike(residual):
    rng = np.random.default_rng(1)
    hr, condition = torch.rand(3, 1, 4, 4, 4) * 0.8, torch.rand(3, 1, 4, 4, 4) * 0.8
    target = (hr - condition) * 10 if residual else hr * 2 - 1
    scaled_target, scaled_condition = scale_intensity(target, condition * 2 - 1, 0.2, residual, rng)
    scale = ((scaled_condition + 1) / 2 / condition)[:, :, :1, :1, :1]
    assert not torch.allclose(scale, torch.ones_like(scale))
    scaled_hr = (scaled_condition + 1) / 2 + scaled_target / 10 if residual else (scaled_target + 1) / 2
    torch.testing.assert_close(scaled_hr, hr * scale)
