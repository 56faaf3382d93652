"""The workflow configuration: validation (schema first, then what a schema cannot say) and merging.

``config/config.yaml`` and the JSON schema are the only places a default
lives; code reads validated sections with ``section["key"]``. A model's
settings are resolved from it by :mod:`mrisr.model.spec`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

from .io import MrisrError

# Keys and values that changed name, with what to write instead.
RENAMED_KEYS = {
    ("model",): "network (the U-Net settings shared by all models; `models:` lists the models)",
    ("sample",): "sampler (the DDIM settings)",
    ("data", "sample"): "data.embedded (the real brains that ship inside packages)",
    **{("pairs", key): f"degradations.<name>.{key}, with pairs.degradation naming the one the pairs are made by"
       for key in ("order", "antialias", "noise_std")},
}
RENAMED_VALUES = {("diffusion", "schedule", "seed"): "cos2_product", ("data", "source", "sample"): "embedded"}


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
    if path[:1] == ["degradations"] and len(path) >= 2 and error.validator != "enum":
        return (f"config key {_location(path[:2])}: a degradation is `operator: spline` with order, antialias and "
                "noise_std, `operator: slice` with profile, gap and noise_std, or `operator: block` or `kspace` with "
                "noise_std; see config/README.md")
    if error.validator == "required":
        key = error.message.split(" is a required")[0]
        return f"config key {key} is missing under {_location(error.absolute_path)}"
    return f"config key {_location(error.absolute_path)}: {error.message}"


def _lookup(config: dict, path: tuple[str, ...]) -> object:
    """The value at ``path`` in nested dicts, or None."""
    for key in path:
        config = config.get(key) if isinstance(config, dict) else None
    return config


def _check_renamed(config: dict) -> None:
    for path, new in RENAMED_KEYS.items():
        if _lookup(config, path) is not None:
            raise MrisrError(f"config key {'.'.join(path)}: renamed {new}")
    for (*path, old), new in RENAMED_VALUES.items():
        if _lookup(config, tuple(path)) == old:
            raise MrisrError(f"config key {'.'.join(path)}: {old!r} was renamed {new!r}")


def coerce_strings(config: object, schema: dict, root: dict | None = None) -> object:
    """``config`` with strings turned into the numbers, booleans, nulls and lists the schema asks for.

    Snakemake hands the values of a nested ``--config`` override over as
    strings (``--config sampler='{n_samples: 4}'`` gives ``'4'``); each is
    read as YAML where the schema expects something else than a string.
    """
    root = root or schema
    while "$ref" in schema:
        schema = _lookup(root, tuple(schema["$ref"].removeprefix("#/").split("/")))
    for combined in ("allOf", "oneOf", "anyOf"):
        for option in schema.get(combined, []):
            config = coerce_strings(config, option, root)
    if isinstance(config, str) and "string" not in _types(schema) and _types(schema):
        try:
            parsed = yaml.safe_load(config)
        except yaml.YAMLError:
            return config
        return config if isinstance(parsed, str) else coerce_strings(parsed, schema, root)
    if isinstance(config, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {key: coerce_strings(value, properties.get(key, extra if isinstance(extra, dict) else {}), root)
                for key, value in config.items()}
    if isinstance(config, list) and isinstance(schema.get("items"), dict):
        return [coerce_strings(item, schema["items"], root) for item in config]
    return config


def _types(schema: dict) -> set[str]:
    """The JSON types a schema (or its alternatives) allows."""
    declared = schema.get("type", [])
    types = {declared} if isinstance(declared, str) else set(declared)
    for option in schema.get("oneOf", []) + schema.get("anyOf", []):
        types |= _types(option)
    return types


def validate_config(config: dict, schema_path: str | Path) -> None:
    """Coerce ``--config`` strings to their types (in place), then raise :class:`MrisrError` with one line naming
    the first wrong key."""
    _check_renamed(config)
    schema = yaml.safe_load(Path(schema_path).read_text())
    config.update(coerce_strings(config, schema))
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise MrisrError(_schema_error_line(error))
    _check_degradation_names(config)


def _check_degradation_names(config: dict) -> None:
    """Every degradation named (pairs, training of each model, data consistency, evaluation) is defined under
    ``degradations:``, and the evaluation scores the pairs' own one (the panels and every model's operator)."""
    defined = sorted(config["degradations"])
    uses = {"pairs.degradation": [config["pairs"]["degradation"]],
            "train.degradations": config["train"]["degradations"],
            "evaluate.degradations": config["evaluate"]["degradations"]}
    if config["sampler"]["consistency_degradation"] is not None:
        uses["sampler.consistency_degradation"] = [config["sampler"]["consistency_degradation"]]
    for name, entry in config["models"].items():
        if isinstance(entry, dict) and "degradations" in entry.get("train", {}):
            uses[f"models.{name}.train.degradations"] = entry["train"]["degradations"]
        if isinstance(entry, dict) and (entry.get("sampler") or {}).get("consistency_degradation") is not None:
            uses[f"models.{name}.sampler.consistency_degradation"] = [entry["sampler"]["consistency_degradation"]]
    for key, names in uses.items():
        unknown = [name for name in names if name not in config["degradations"]]
        if unknown:
            raise MrisrError(f"config key {key}: no degradation named {', '.join(map(repr, unknown))}; "
                             f"defined under degradations: {', '.join(defined)}")
    if config["pairs"]["degradation"] not in config["evaluate"]["degradations"]:
        raise MrisrError(f"config key evaluate.degradations: must include pairs.degradation "
                         f"({config['pairs']['degradation']!r}), the operator every model assumes")


def merge(base: dict, override: dict | None) -> dict:
    """``base`` with ``override`` merged in key by key, as Snakemake merges a --configfile."""
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        nested = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = merge(merged[key], value) if nested else copy.deepcopy(value)
    return merged


# Sections a user's config replaces as a whole instead of merging into the default (mixing two splits,
# or two sets of embedded volumes, makes no sense).
REPLACED_WHOLE = (("split",), ("data", "embedded", "derived_per_volume"))


def replace_whole_sections(merged: dict, user: dict) -> None:
    """Put the sections of REPLACED_WHOLE that ``user`` gives into ``merged`` as given (in place)."""
    for path in REPLACED_WHOLE:
        given = _lookup(user, path)
        if given:
            target = merged
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = copy.deepcopy(given)
