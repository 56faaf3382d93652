"""A wrong config stops with one line naming the key; the shipped configs are valid; models resolve."""
import copy
from pathlib import Path

import pytest
import yaml

from mrisr.config import merge, validate_config
from mrisr.model.spec import resolve_models
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
    (lambda c: c.pop("train"), r"config key 'train' is missing"),
    (lambda c: c.update(model={"base_channels": 8}), r"config key model: renamed network"),
    (lambda c: c.update(sample={"steps": 3}), r"config key sample: renamed sampler"),
    (lambda c: c["diffusion"].update(schedule="seed"), r"diffusion\.schedule: 'seed' was renamed 'cos2_product'"),
    (lambda c: c["models"].update(bad={"kind": "cascade"}), r"config key models\.bad: a model is either"),
    (lambda c: c["models"].update(bad={"pretrained": "m.pt", "kind": "diffusion3d"}), r"models\.bad: a model is"),
    (lambda c: c["models"].update(bad={"kind": "diffusion3d", "train": {"stepz": 3}}), r"models\.bad"),
    (lambda c: c["pairs"].update(order=1), r"config key pairs\.order: renamed degradations\.<name>\.order"),
    (lambda c: c["pairs"].update(noise_std=0.0), r"config key pairs\.noise_std: renamed degradations"),
    (lambda c: c["pairs"].update(degradation="blocky"),
     r"config key pairs\.degradation: no degradation named 'blocky'; defined under degradations: block, kspace"),
    (lambda c: c["train"].update(degradations=["spline", "kspce"]), r"config key train\.degradations: .*'kspce'"),
    (lambda c: c["evaluate"].update(degradations=["spline", "nosy"]), r"config key evaluate\.degradations: .*'nosy'"),
    (lambda c: c["evaluate"].update(degradations=["block"]), r"evaluate\.degradations: must include pairs\.degr"),
    (lambda c: c["evaluate"].update(degradations=[]), r"config key evaluate\.degradations: \[\] should be non-empty"),
    (lambda c: c["models"].update(bad={"kind": "diffusion3d", "train": {"degradations": ["x"]}}),
     r"config key models\.bad\.train\.degradations: no degradation named 'x'"),
    (lambda c: c["sampler"].update(consistency_degradation="k-space"),
     r"config key sampler\.consistency_degradation: no degradation named 'k-space'"),
    (lambda c: c["models"].update(bad={"kind": "diffusion3d", "sampler": {"consistency_degradation": "y"}}),
     r"config key models\.bad\.sampler\.consistency_degradation: no degradation named 'y'"),
    (lambda c: c["degradations"].update(box={"operator": "block", "order": 1, "noise_std": 0.0}),
     r"unknown config key degradations\.box\.order; allowed here: noise_std, operator"),
    (lambda c: c["degradations"].update(sharp={"operator": "spline", "noise_std": 0.0}),
     r"config key degradations\.sharp: a degradation is `operator: spline` with order, antialias and noise_std"),
    (lambda c: c["degradations"].update(slab={"operator": "slice", "profile": "gaussian", "noise_std": 0.0}),
     r"config key degradations\.slab: a degradation is .*`operator: slice` with profile, gap"),
    (lambda c: c["degradations"].update(slab={"operator": "slice", "profile": "sinc", "gap": 0, "noise_std": 0}),
     r"config key degradations\.slab\.profile: .sinc. is not one of"),
    (lambda c: c["degradations"].update(box={"operator": "sinc", "noise_std": 0.0}),
     r"config key degradations\.box\.operator: 'sinc' is not one of"),
])
def test_bad_config_gets_one_line_naming_the_key(config, edit, expected):
    bad = copy.deepcopy(config)
    edit(bad)
    with pytest.raises(MrisrError, match=expected) as error:
        validate_config(bad, SCHEMA)
    assert "\n" not in str(error.value)


def test_hcp_config_is_valid(config):
    user = yaml.safe_load((ROOT / "config" / "hcp.yaml").read_text())
    validate_config({**merge(config, user), "split": user["split"]}, SCHEMA)


def test_models_get_the_shared_settings_with_their_own_overrides(config):
    config["models"] = {"big": {"kind": "diffusion3d", "train": {"steps": 7}, "network": {"base_channels": 32}},
                        "plain": {"kind": "diffusion3d"}, "dropped": None,
                        "regression": {"kind": "regression3d"}}
    models = resolve_models(config)
    assert list(models) == ["big", "plain", "regression"]
    assert models["big"]["train"]["steps"] == 7
    assert models["big"]["train"]["batch_size"] == config["train"]["batch_size"]
    assert models["big"]["network"]["base_channels"] == 32 and models["plain"]["network"] == config["network"]
    assert models["plain"]["factor"] == [2.0] * 3 and models["plain"]["output_factor"] == [1.0] * 3
    # A regression model trains at t = T throughout and is one network pass per mirrored view.
    assert models["regression"]["train"]["warm_start_steps"] == config["train"]["steps"]
    assert models["regression"]["sampler"]["steps"] == 1
    assert models["regression"]["sampler"]["n_samples"] == 2 ** len(config["sampler"]["flip_axes"])


def test_a_cascade_chains_its_stages_down_to_the_hr_grid(config):
    config["models"] = {"first": {"kind": "regression3d", "factor": 4, "output_factor": 2},
                        "second": {"kind": "diffusion3d"},
                        "both": {"kind": "cascade", "stages": ["first", "second"]}}
    assert resolve_models(config)["both"]["factor"] == [4.0] * 3
    config["models"]["both"]["stages"] = ["second", "first"]
    with pytest.raises(MrisrError, match=r"models\.both\.stages: 'first' starts from factor 4 but the stage"):
        resolve_models(config)
    config["models"]["both"]["stages"] = ["first", "missing"]
    with pytest.raises(MrisrError, match=r"no model named 'missing'"):
        resolve_models(config)


def test_patches_must_survive_the_unet_halvings(config):
    config["models"] = {"odd": {"kind": "diffusion3d", "sampler": {"patch_size": [30, 32, 32]}}}
    with pytest.raises(MrisrError, match=r"models\.odd: sampler\.patch_size \[30, 32, 32\] must be divisible by 4"):
        resolve_models(config)


def test_views_only_along_axes_the_model_learns_mirrored(config):
    config["models"] = {"plain": {"kind": "regression3d", "train": {"flip_augment": [0]}}}
    with pytest.raises(MrisrError, match=r"models\.plain: sampler\.flip_axes \[0, 1, 2\] mirrors along axes \[1, 2\]"):
        resolve_models(config)
    config["models"]["plain"]["sampler"] = {"flip_axes": [0]}
    assert resolve_models(config)["plain"]["sampler"]["n_samples"] == 2


def test_a_pretrained_model_takes_its_settings_from_the_file(config):
    config["models"] = {"theirs": {"pretrained": "their.pt", "sampler": {"steps": 9}}}
    header = {"kind": "diffusion3d", "factor": [2.0] * 3, "output_factor": [1.0] * 3,
              "sampler": {"steps": 5, "n_samples": 4}}
    model = resolve_models(config, lambda path: header)["theirs"]
    assert model["pretrained"] == "their.pt"
    assert model["sampler"] == {**config["sampler"], "steps": 9, "n_samples": 4}


def test_config_readme_states_the_defaults_of_config_yaml(config):
    # Rows `| `section.key` | value | ...` whose value is a plain YAML scalar or list must match config.yaml.
    checked = 0
    for line in (ROOT / "config" / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.split("|")[1:-1]]
        if len(cells) < 2 or not cells[0].startswith("`") or cells[0].count("`") != 2 or "*" in cells[0]:
            continue
        try:
            documented = yaml.safe_load(cells[1].strip("`"))
        except yaml.YAMLError:
            continue
        if not isinstance(documented, (bool, int, float, list, type(None))):
            continue
        value = config
        for key in cells[0].strip("`").split("."):
            value = value[key]
        assert documented == value, f"config/README.md says {cells[0]} = {cells[1]}, config.yaml has {value}"
        checked += 1
    assert checked > 30


def test_nested_command_line_values_are_read_with_the_schema_types(config):
    # What Snakemake hands over for --config sampler='{n_samples: 4, refine_from: null}' train='{flip_augment: [0]}'
    config["sampler"].update(n_samples="4", refine_from="null", autocast="false", overlap="0.25")
    config["train"]["flip_augment"] = "[0]"
    config["train"]["device"] = "cpu"
    validate_config(config, SCHEMA)
    assert config["sampler"]["n_samples"] == 4 and config["sampler"]["refine_from"] is None
    assert config["sampler"]["autocast"] is False and config["sampler"]["overlap"] == 0.25
    assert config["train"]["flip_augment"] == [0] and config["train"]["device"] == "cpu"


def test_old_names_of_the_embedded_data_say_the_new_ones(config):
    with pytest.raises(MrisrError, match=r"data\.source: 'sample' was renamed 'embedded'"):
        validate_config({**config, "data": {**config["data"], "source": "sample"}}, SCHEMA)
    with pytest.raises(MrisrError, match=r"data\.sample: renamed data\.embedded"):
        validate_config({**config, "data": {**config["data"], "sample": {}}}, SCHEMA)
