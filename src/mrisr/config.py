"""The workflow configuration: validation (schema first, then what a schema cannot say) and the models it names.

``config/config.yaml`` and the JSON schema are the only places a default
lives; code reads validated sections with ``section["key"]``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import numpy as np
import yaml

from .degrade import as_factors, factor_label
from .io import MrisrError

# Keys and values that changed name, with what to write instead.
RENAMED_SECTIONS = {
    "model": "network (the U-Net settings shared by all models; `models:` lists the models)",
    "sample": "sampler (the DDIM settings; `data.sample` stays the embedded data)",
}
RENAMED_VALUES = {("diffusion", "schedule", "seed"): "cos2_product"}

SHARED_SECTIONS = ("network", "diffusion", "train", "sampler")
TRAINABLE_KINDS = ("diffusion3d", "triplanar", "regression3d")


def _location(path) -> str:
    return ".".join(str(part) for part in path) or "(top level)"


def _schema_error_line(error: jsonschema.ValidationError) -> str:
    """One line naming the key and what is wrong with it."""
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        where = _location(error.absolute_path)
        keys = ", ".join(f"{where}.{key}" if error.absolute_path else key for key in unknown)
        return f"unknown config key {keys}; allowed here: {', '.join(allowed)}"
    path = list(error.absolute_path)
    if path[:1] == ["models"] and error.validator in ("oneOf", "not", "const", "required"):
        return (f"config key {_location(path[:2])}: a model is either `kind:` (diffusion3d, triplanar, "
                "regression3d) with optional settings, `kind: cascade` with `stages:`, or `pretrained:` a model "
                "file (with optional `sampler:`); see config/README.md")
    if error.validator == "required":
        key = error.message.split(" is a required")[0]
        return f"config key {key} is missing under {_location(error.absolute_path)}"
    return f"config key {_location(error.absolute_path)}: {error.message}"


def _check_renamed(config: dict) -> None:
    for old, new in RENAMED_SECTIONS.items():
        if old in config:
            raise MrisrError(f"config key {old}: renamed {new}")
    for (section, key, old), new in RENAMED_VALUES.items():
        if (config.get(section) or {}).get(key) == old:
            raise MrisrError(f"config key {section}.{key}: {old!r} was renamed {new!r}")


def validate_config(config: dict, schema_path: str | Path) -> None:
    """Raise :class:`MrisrError` with one line naming the first wrong key."""
    _check_renamed(config)
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise MrisrError(_schema_error_line(error))


def merge(base: dict, override: dict | None) -> dict:
    """``base`` with ``override`` merged in key by key, as Snakemake merges a --configfile."""
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        nested = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = merge(merged[key], value) if nested else copy.deepcopy(value)
    return merged


# Sections a user's config replaces as a whole instead of merging into the default (mixing two splits,
# or two sets of sample volumes, makes no sense).
REPLACED_WHOLE = (("split",), ("data", "sample", "derived_per_volume"))


def replace_whole_sections(merged: dict, user: dict) -> None:
    """Put the sections of REPLACED_WHOLE that ``user`` gives into ``merged`` as given (in place)."""
    for path in REPLACED_WHOLE:
        given = user
        for key in path:
            given = given.get(key) if isinstance(given, dict) else None
        if given:
            target = merged
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = copy.deepcopy(given)


def resolve_models(config: dict, read_model_file=None) -> dict[str, dict]:
    """Every model of ``models:`` with its full settings, in config order.

    Trainable models get the shared sections with their own overrides merged
    in, and their factors; a cascade gets its stages' factors; a pretrained
    model gets its kind and factors from the file (``read_model_file(path)``
    returns the file's header). Raises :class:`MrisrError` naming the model
    when something does not fit.
    """
    models: dict[str, dict] = {}
    entries = {name: entry for name, entry in config["models"].items() if entry is not None}
    if not entries:
        raise MrisrError("config key models: every model is null; name at least one")
    for name, entry in entries.items():
        if "pretrained" in entry:
            if read_model_file is None:
                raise MrisrError(f"models.{name}: pretrained models need the model file reader")
            header = read_model_file(entry["pretrained"])
            models[name] = {
                "kind": header["kind"], "pretrained": entry["pretrained"], "factor": header["factor"],
                "output_factor": header["output_factor"],
                # The file's sampler defaults; keys it predates come from the config's sampler section.
                "sampler": merge(merge(config["sampler"], header["sampler"]), entry.get("sampler")),
            }
        elif entry["kind"] == "cascade":
            models[name] = {"kind": "cascade", "stages": list(entry["stages"])}
        else:
            models[name] = trainable_model(config, name)
    for name, model in models.items():
        if model["kind"] == "cascade":
            _resolve_cascade(name, model, models)
    return models


def trainable_model(config: dict, name: str) -> dict:
    """A trainable model's full settings: the shared sections with its own overrides, and its factors."""
    entry = config["models"][name]
    model = {section: merge(config[section], entry.get(section)) for section in SHARED_SECTIONS}
    model.update(kind=entry["kind"], factor=as_factors(entry.get("factor", config["pairs"]["factor"])).tolist(),
                 output_factor=as_factors(entry.get("output_factor", 1)).tolist())
    if entry["kind"] == "regression3d":  # one network pass at t = T per mirrored view: nothing to refine
        model["train"]["warm_start_steps"] = model["train"]["steps"]
        model["sampler"].update(steps=1, n_samples=2 ** len(model["sampler"]["flip_axes"]))
    _check_patches(name, model)
    _check_views(name, model)
    return model


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
