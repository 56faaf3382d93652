"""The conda environments (for --sdm conda) pin the same versions as requirements.lock."""
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def lock_versions():
    versions = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            versions[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return versions


@pytest.mark.parametrize("env_file", sorted((ROOT / "envs").glob("*.yaml")), ids=lambda p: p.name)
def test_environment_pins_match_the_lock(env_file):
    lock = lock_versions()
    dependencies = yaml.safe_load(env_file.read_text())["dependencies"]
    pip = next(d["pip"] for d in dependencies if isinstance(d, dict))
    assert pip, f"{env_file.name} lists no packages"
    for requirement in pip:
        name, version = requirement.split("==")
        assert lock.get(re.sub(r"[-_.]+", "-", name).lower()) == version, f"{env_file.name}: {requirement}"


def test_every_rule_names_an_existing_environment():
    for rules in (ROOT / "workflow" / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*"([^"]+)"', rules.read_text()):
            assert (rules.parent / env).resolve().is_file(), f"{rules.name}: {env}"
