"""A wrong config stops with one line naming the key; the shipped configs are valid."""
import copy
from pathlib import Path

import pytest
import yaml

from mrisr.config import validate_config
from mrisr.io import MrisrError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


@pytest.fixture
def config():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def test_default_config_is_valid(config):
    validate_config(config, SCHEMA)


@pytest.mark.parametrize("edit,expected", [
    (lambda c: c["train"].update(stepz=5), r"unknown config key train\.stepz; allowed here: .*steps"),
    (lambda c: c.update(trian={}), r"unknown config key trian"),
    (lambda c: c["train"].update(steps="many"), r"config key train\.steps: 'many' is not of type 'integer'"),
    (lambda c: c["pairs"].update(factor=0.5), r"config key pairs\.factor"),
    (lambda c: c["diffusion"].update(schedule="linear"), r"config key diffusion\.schedule: 'linear' is not one of"),
    (lambda c: c["sample"].update(patch_size=[30, 32, 32]), r"sample\.patch_size: \[30, 32, 32\] must be divisible by 4"),
    (lambda c: c.pop("train"), r"config key 'train' is missing"),
])
def test_bad_config_gets_one_line_naming_the_key(config, edit, expected):
    bad = copy.deepcopy(config)
    edit(bad)
    with pytest.raises(MrisrError, match=expected) as error:
        validate_config(bad, SCHEMA)
    assert "\n" not in str(error.value)




def merged(base: dict, override: dict) -> dict:
    """Merge as Snakemake merges a --configfile over the defaults (a split replaces the split)."""
    result = dict(base)
    for key, value in override.items():
        nested = isinstance(value, dict) and isinstance(result.get(key), dict) and key != "split"
        result[key] = merged(result[key], value) if nested else value
    return result


def test_hcp_config_is_valid(config):
    validate_config(merged(config, yaml.safe_load((ROOT / "config" / "hcp.yaml").read_text())), SCHEMA)
