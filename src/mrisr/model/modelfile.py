"""The model file: what a trained model holds, how it is saved and loaded, and how images enter and leave the network.

A model file is a plain ``torch.save`` of tensors, numbers, strings, lists and
dicts, loaded with ``weights_only=True``: opening a file someone sent you
never runs code from it (a pickle could). It holds everything needed to use
the model without the workflow's config: the network and diffusion settings,
the factors and voxel size it was trained for, the degradation that made its
training pairs (for data-consistent sampling), the sampler defaults, the
training settings and subjects, and provenance.

Network units: the conditioning input is the LR scan cubic-interpolated to
the output grid, as an image in [0, 1] mapped to [-1, 1]; the target is the
residual over that interpolation times ``residual_scale`` (or, with scale 0,
the image itself in [-1, 1]). :func:`condition_to_network`,
:func:`target_to_network` and :func:`image_from_network` are the only places
that conversion is written.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Sequence, TypeVar

import numpy as np
import torch
from torch import nn

from ..grids import upsample
from ..io import MrisrError, atomic_path
from .spec import ModelSpec

FORMAT = "mrisr-model"
VERSION = 2

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def condition_image(lr_volume: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """The conditioning image: the LR volume cubic-interpolated to ``shape``, clipped to [0, 1]."""
    return np.clip(upsample(lr_volume, shape, "cubic"), 0.0, 1.0)


def condition_to_network(condition: Array) -> Array:
    """A conditioning image in [0, 1] as the network's input channel."""
    return condition * 2 - 1


def target_to_network(image: Array, condition: Array, residual_scale: float) -> Array:
    """What the network learns to produce for ``image`` given ``condition`` (both images in [0, 1])."""
    return (image - condition) * residual_scale if residual_scale > 0 else image * 2 - 1


def image_from_network(output: Array, condition: Array, residual_scale: float) -> Array:
    """The image a network output (an x0 estimate) stands for: the inverse of :func:`target_to_network`."""
    return condition + output / residual_scale if residual_scale > 0 else (output + 1) / 2


def save_model(path: str | Path, spec: ModelSpec, network: nn.Module) -> None:
    """Write the model file atomically (a crash leaves no half-written file)."""
    _write(path, {"format": FORMAT, "version": VERSION, "spec": asdict(spec),
                  "state_dict": {name: tensor.detach().cpu() for name, tensor in network.state_dict().items()}})


def _write(path: str | Path, contents: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(contents, tmp)


def save_calibrated(weights_path: str | Path, path: str | Path, sampler: dict, calibration: dict | None) -> None:
    """The model file at ``weights_path`` with the sampler settings it was calibrated with as its sampler defaults
    and its calibration (plain numbers, lists and strings; ``None``: none), written to ``path``."""
    spec, state_dict = read_model_file(weights_path)
    contents = {"format": FORMAT, "version": VERSION, "spec": {**asdict(spec), "sampler": dict(sampler)},
                "state_dict": state_dict}
    if calibration is not None:
        contents["calibration"] = calibration
    _write(path, contents)


def read_calibration(path: str | Path) -> dict | None:
    """The calibration a model file holds (see :mod:`mrisr.inference.calibration`), or ``None``."""
    read_model_file(path)  # one line naming the file when it is not a model file
    return torch.load(path, map_location="cpu", weights_only=True).get("calibration")


def read_model_file(path: str | Path) -> tuple[ModelSpec, dict[str, torch.Tensor]]:
    """The spec and weights of a model file, or one line saying why it is not one (never unpickles code)."""
    path = Path(path)
    if not path.is_file():
        raise MrisrError(f"{path}: model file not found")
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds of errors for foreign or damaged files
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise MrisrError(f"{path}: not an mrisr model file ({reason}); give the model.pt written by the "
                         "workflow's train rule") from None
    if not isinstance(contents, dict) or contents.get("format") != FORMAT:
        if isinstance(contents, dict) and {"state_dict", "model", "diffusion"} <= set(contents):
            raise MrisrError(f"{path}: a model file of an earlier mrisr (format 1), which this version cannot "
                             "use; retrain it (snakemake --forcerun train)")
        raise MrisrError(f"{path}: not an mrisr model file; give the model.pt written by the workflow's train rule")
    if contents.get("version") != VERSION:
        raise MrisrError(f"{path}: model file format {contents.get('version')}, this mrisr reads format {VERSION}; "
                         "use the mrisr version that wrote it, or retrain")
    known = {field.name for field in fields(ModelSpec)}
    spec_fields = contents.get("spec")
    if isinstance(spec_fields, dict) and isinstance(spec_fields.get("degradation"), dict):
        # Files written before `degradations:` existed were all made with the spline operator, and trained on it.
        spec_fields["degradation"].setdefault("operator", "spline")
        spec_fields.setdefault("training_degradations", {"pairs": spec_fields["degradation"]})
    if not isinstance(spec_fields, dict) or set(spec_fields) != known:
        raise MrisrError(f"{path}: damaged mrisr model file (its settings are incomplete); retrain it")
    # Files written before `sampler.estimate` existed estimated by the mean of their samples.
    spec_fields["sampler"].setdefault("estimate", "mean")
    spec_fields["sampler"].setdefault("consistency_degradation", None)  # files before it: the model's own
    # Files written before `sampler.flip_axes` existed mirrored every other sample left-right, or none.
    mirrored = spec_fields["sampler"].pop("mirror_samples", False)
    spec_fields["sampler"].setdefault("flip_axes", [0] if mirrored else [])
    return ModelSpec(**spec_fields), contents["state_dict"]


def load_model(path: str | Path, device: torch.device | str = "cpu") -> tuple[ModelSpec, nn.Module]:
    """The spec and the trained network (eval mode, on ``device``) of a model file."""
    spec, state_dict = read_model_file(path)
    network = spec.build_network()
    try:
        network.load_state_dict(state_dict)
    except RuntimeError as error:
        raise MrisrError(f"{path}: weights do not fit the network the file describes "
                         f"({str(error).splitlines()[0][:120]}); the file is damaged, retrain it") from None
    return spec, network.to(device).eval()
