"""A model's settings: the one place the config turns into the :class:`ModelSpec` every job uses.

The train job, the super_resolve job, ``mrisr super-resolve``, the
benchmarks and the tests all get a model's settings from
:func:`model_settings` (the shared ``network``, ``diffusion``, ``train``
and ``sampler`` sections of the validated config with the model's own
overrides merged in) and its spec from :func:`model_spec`, so a changed
default changes what all of them run. Nothing here imports PyTorch: the
workflow reads it while it parses the DAG.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..config import merge
from ..grids import as_factors, factor_label
from ..io import MrisrError

SHARED_SECTIONS = ("network", "diffusion", "train", "sampler")
TRAINABLE_KINDS = ("diffusion3d", "triplanar", "regression3d")


@dataclass(frozen=True)
class ModelSpec:
    """Everything in a model file but the weights."""

    kind: str                   # diffusion3d | regression3d | triplanar
    network: dict               # arguments of mrisr.model.networks.UNet
    diffusion: dict             # schedule, timesteps, noise_scale, prediction, residual_scale, scale_input
    factor: list[float]         # the LR factor it starts from, per axis
    output_factor: list[float]  # the factor it produces (1: the HR grid)
    voxel_mm: list[float]       # voxel size of the grid it produces
    patch_size: list[int]       # training patch (a tri-planar model's three slabs come from it)
    sampler: dict               # sampler defaults
    degradation: dict           # the pairs' degradation (pairs.degradation): the operator data consistency assumes
    training_degradations: dict  # name -> degradation of each one its training pairs were drawn from
    train: dict
    train_subjects: list[str]
    provenance: dict

    @property
    def residual_scale(self) -> float:
        return float(self.diffusion["residual_scale"])

    @property
    def downsampling(self) -> int:
        """How many times the U-Net halves its input, as the factor window sides must be a multiple of."""
        return 2 ** (len(self.network["channel_mult"]) - 1)

    @property
    def step_factor(self) -> list[float]:
        """How many times coarser its input grid is than its output grid, per axis."""
        return [f / o for f, o in zip(self.factor, self.output_factor)]

    @property
    def input_voxel_mm(self) -> list[float]:
        """The voxel size of the scans it takes, per axis: its output voxel times its step factor."""
        return [mm * f for mm, f in zip(self.voxel_mm, self.step_factor)]

    def build_network(self):
        """A fresh (untrained) network of this model's kind and settings."""
        from .networks import TriplanarUNet, UNet

        return TriplanarUNet(**self.network) if self.kind == "triplanar" else UNet(**self.network)

    def diffusion_process(self):
        from .diffusion import GaussianDiffusion

        return GaussianDiffusion(**{k: v for k, v in self.diffusion.items() if k != "residual_scale"})


def degradation_of(config: dict) -> dict:
    """How the pairs made an LR scan from an HR scan, apart from the factor: the degradation ``pairs.degradation``
    names, the forward operator every model assumes."""
    return dict(config["degradations"][config["pairs"]["degradation"]])


def degradations_named(config: dict, names: list[str]) -> dict[str, dict]:
    """The degradations ``names`` of the config, by name, in that order."""
    return {name: dict(config["degradations"][name]) for name in names}


def with_consistency_degradation(config: dict, sampler: dict) -> dict:
    """``sampler`` with its ``consistency_degradation`` name replaced by that degradation (name included), so that
    a model file carries the operator its data consistency assumes; ``None`` stays: the model's own."""
    name = sampler.get("consistency_degradation")
    if not isinstance(name, str):
        return sampler
    return {**sampler, "consistency_degradation": {"name": name, **config["degradations"][name]}}


def model_settings(config: dict, name: str) -> dict:
    """A trainable model's full settings: the shared sections with its own overrides, and its factors."""
    entry = config["models"][name]
    model = {section: merge(config[section], entry.get(section)) for section in SHARED_SECTIONS}
    model.update(kind=entry["kind"], factor=as_factors(entry.get("factor", config["pairs"]["factor"])).tolist(),
                 output_factor=as_factors(entry.get("output_factor", 1)).tolist(),
                 # The definitions, not just the names: a changed definition retrains the models drawing from it.
                 training_degradations=degradations_named(config, model["train"]["degradations"]))
    model["sampler"] = with_consistency_degradation(config, model["sampler"])
    if entry["kind"] == "regression3d":  # one network pass at t = T per mirrored view: nothing to refine
        model["train"]["warm_start_steps"] = model["train"]["steps"]
        model["sampler"].update(steps=1, n_samples=2 ** len(model["sampler"]["flip_axes"]))
    _check_patches(name, model)
    _check_views(name, model)
    return model


def model_spec(config: dict, name: str, voxel_mm: list[float], train_subjects: list[str],
               provenance: dict) -> ModelSpec:
    """The spec of model ``name`` of the config, trained on ``train_subjects`` whose HR voxels are ``voxel_mm``."""
    model = model_settings(config, name)
    return ModelSpec(
        kind=model["kind"], network=model["network"], diffusion=model["diffusion"], factor=model["factor"],
        output_factor=model["output_factor"],
        voxel_mm=(np.asarray(voxel_mm, dtype=float) * np.asarray(model["output_factor"])).tolist(),
        patch_size=model["train"]["patch_size"], sampler=model["sampler"], degradation=degradation_of(config),
        training_degradations=model["training_degradations"], train=model["train"],
        train_subjects=sorted(train_subjects), provenance=provenance)


def resolve_models(config: dict, read_header: Callable[[str], dict] | None = None) -> dict[str, dict]:
    """Every model of ``models:`` with its full settings, in config order.

    Trainable models get :func:`model_settings`; a cascade gets its stages'
    factors; a pretrained model gets its kind and factors from the file
    (``read_header(path)`` returns the file's spec as a dict). Raises
    :class:`MrisrError` naming the model when something does not fit.
    """
    models: dict[str, dict] = {}
    entries = {name: entry for name, entry in config["models"].items() if entry is not None}
    if not entries:
        raise MrisrError("config key models: every model is null; name at least one")
    for name, entry in entries.items():
        if "pretrained" in entry:
            if read_header is None:
                raise MrisrError(f"models.{name}: pretrained models need the model file reader")
            header = read_header(entry["pretrained"])
            models[name] = {
                "kind": header["kind"], "pretrained": entry["pretrained"], "factor": header["factor"],
                "output_factor": header["output_factor"],
                # The file's sampler defaults; keys it predates come from the config's sampler section.
                "sampler": with_consistency_degradation(
                    config, merge(merge(config["sampler"], header["sampler"]), entry.get("sampler"))),
            }
        elif entry["kind"] == "cascade":
            models[name] = {"kind": "cascade", "stages": list(entry["stages"])}
        else:
            models[name] = model_settings(config, name)
    for name, model in models.items():
        if model["kind"] == "cascade":
            _resolve_cascade(name, model, models)
    return models


def _check_views(name: str, model: dict) -> None:
    """Mirrored views only along axes the model learns mirrored: any other view asks it about scans it never saw."""
    untrained = sorted(set(model["sampler"]["flip_axes"]) - set(model["train"]["flip_augment"]))
    if untrained:
        raise MrisrError(f"models.{name}: sampler.flip_axes {model['sampler']['flip_axes']} mirrors along axes "
                         f"{untrained}, which train.flip_augment {model['train']['flip_augment']} does not; "
                         "add them to train.flip_augment or drop them from sampler.flip_axes")


def _check_patches(name: str, model: dict) -> None:
    """Patch sides must survive the U-Net's halvings (a tri-planar slab's thin side is 1 by construction)."""
    downsampling = 2 ** (len(model["network"]["channel_mult"]) - 1)
    for section in ("train", "sampler"):
        patch = model[section]["patch_size"]
        if any(size % downsampling for size in patch):
            raise MrisrError(f"models.{name}: {section}.patch_size {patch} must be divisible by {downsampling} "
                             f"(the U-Net halves the grid {downsampling.bit_length() - 1} times)")


def _resolve_cascade(name: str, cascade: dict, models: dict[str, dict]) -> None:
    """A cascade's stages exist, are not cascades themselves, and chain from its factor down to the HR grid."""
    for stage in cascade["stages"]:
        if stage not in models:
            raise MrisrError(f"models.{name}.stages: no model named {stage!r}; define it under models:")
        if models[stage]["kind"] == "cascade":
            raise MrisrError(f"models.{name}.stages: {stage!r} is a cascade itself; list its stages instead")
    stages = [models[stage] for stage in cascade["stages"]]
    for before, after, label in zip(stages, stages[1:], cascade["stages"][1:]):
        if not np.allclose(before["output_factor"], after["factor"]):
            raise MrisrError(f"models.{name}.stages: {label!r} starts from factor {factor_label(after['factor'])} "
                             f"but the stage before it produces {factor_label(before['output_factor'])}")
    if not np.allclose(stages[-1]["output_factor"], 1):
        raise MrisrError(f"models.{name}.stages: the last stage must produce the HR grid (output_factor 1)")
    cascade.update(factor=stages[0]["factor"], output_factor=as_factors(1).tolist())
