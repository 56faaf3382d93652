"""Validating a workflow configuration: the JSON schema first, then the rules a schema cannot say."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import yaml

from .io import MrisrError


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
    if error.validator == "required":
        return f"config key {error.message.split(' is a required')[0]} is missing under {_location(error.absolute_path)}"
    return f"config key {_location(error.absolute_path)}: {error.message}"


def validate_config(config: dict, schema_path: str | Path) -> None:
    """Raise :class:`MrisrError` with one line naming the first wrong key."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise MrisrError(_schema_error_line(error))

    downsampling = 2 ** (len(config["model"].get("channel_mult", [1, 2, 4])) - 1)
    for section in ("train", "sample"):
        patch = config[section].get("patch_size", [32, 32, 32])
        if any(size % downsampling for size in patch):
            raise MrisrError(f"config key {section}.patch_size: {patch} must be divisible by {downsampling} "
                             f"(the U-Net halves the grid {downsampling.bit_length() - 1} times)")
