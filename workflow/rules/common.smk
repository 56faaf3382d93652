# Shared by every stage: config validation, subjects and split, the models, path helpers.
import re
import sys

# Rule scripts import the mrisr package from this checkout, installed or not (e.g. in --sdm conda envs).
sys.path.insert(0, f"{workflow.basedir}/src")

from dataclasses import asdict
from pathlib import Path

from mrisr.workflow import degradation_folder, expose_package

expose_package(f"{workflow.basedir}/src")

from mrisr.config import replace_whole_sections, validate_config
from mrisr.data.embedded import embedded_subjects
from mrisr.data.hcp import check_credentials, read_subject_list
from mrisr.data.local import check_local_files, discover_local
from mrisr.data.split import resolve_split, without_excluded
from mrisr.grids import factor_label
from mrisr.inference.voxel_fit import apply_jobs
from mrisr.io import MrisrError
from mrisr.model.spec import TRAINABLE_KINDS, degradation_of, resolve_models
from mrisr.preprocess.skullstrip import missing_tool


def fail(message):
    """Stop before any job starts, with one line and no traceback."""
    print(f"mrisr: {message}", file=sys.stderr)
    sys.exit(1)


def source_subjects(data):
    """Subject IDs the data source offers (and, for local data, their files)."""
    if data["source"] == "embedded":
        return embedded_subjects(data["embedded"]["derived_per_volume"]), {}
    if data["source"] == "local":
        local = data["local"]
        if not local["path"]:
            raise MrisrError("data.local.path: set it to your folder of NIfTI files or BIDS dataset")
        files = discover_local(local["path"], local["pattern"], local["subjects"])
        check_local_files(files)
        return list(files), files
    if not data["hcp"]["subjects"]:
        raise MrisrError("data.hcp.subjects: list the HCP subject IDs (or give a CSV/TSV with a `subject` column)")
    return read_subject_list(data["hcp"]["subjects"]), {}


def check_hcp_credentials(data, subjects):
    """Fail before any job when no AWS credentials are set up and a subject is still to be fetched.

    Only a local look-up: the S3 check of the keys and the subjects' files is the check_hcp_access job's.
    """
    if any(not Path(f"{RESULTS}/raw/{s}/T1w.nii.gz").exists() for s in subjects):
        check_credentials(data["hcp"]["aws_profile"])


def model_file_header(path):
    """A pretrained model's settings, read (safely) from its file."""
    from mrisr.model.modelfile import read_model_file

    return asdict(read_model_file(path)[0])


def apply_scans(apply):
    """Scan ID -> file of the user's own LR scans (``apply:``), without the excluded ones; {} without ``apply.path``."""
    if not apply["path"]:
        return {}
    files = discover_local(apply["path"], apply["pattern"], apply["subjects"], section="apply")
    unknown = sorted(set(apply["exclude"]) - set(files))
    if unknown:
        raise MrisrError(f"apply.exclude: unknown scan(s) {', '.join(unknown)}; found: {', '.join(files)}")
    files = {scan: path for scan, path in files.items() if scan not in apply["exclude"]}
    check_local_files(files)
    return files


def applied_models(apply, models):
    """The models ``apply:`` runs (all by default); a cascade cannot be applied to a scan yet."""
    if not apply["path"]:
        return []
    names = apply["models"] or [name for name, model in models.items() if model["kind"] != "cascade"]
    for name in names:
        if name not in models:
            raise MrisrError(f"apply.models: no model named {name!r}; choose from {', '.join(models)}")
        if models[name]["kind"] == "cascade":
            raise MrisrError(f"apply.models: {name} is a cascade; apply its stages' single models instead")
    return names


def input_voxel_mm(model):
    """The voxel size (mm, per axis) of the scans a model takes: a pretrained file's own, or for a model trained
    here the HR grid's spacing times its factor (known before it is trained only on the template's grid)."""
    entry = MODELS[model]
    if "pretrained" in entry:
        from mrisr.model.modelfile import read_model_file

        return read_model_file(entry["pretrained"])[0].input_voxel_mm
    if config["preprocess"]["output_space"] != "template":
        raise MrisrError(f"apply.pick_model: {model} is trained here on each subject's own grid "
                         "(preprocess.output_space: native), so the voxel size it takes is known only once it is "
                         "trained; use preprocess.output_space: template, or apply.pick_model: false")
    return [config["preprocess"]["spacing"] * f for f in entry["factor"]]


RESULTS = "results"
# Config files given on the command line are merged key by key over config/config.yaml, except the
# sections of mrisr.config.REPLACED_WHOLE (the split, the embedded volumes), which replace the default.
replace_whole_sections(config, workflow.config_settings.overwrite_config)
try:
    validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
    MODELS = resolve_models(config, model_file_header)
    TRAINED = [name for name, model in MODELS.items() if model["kind"] in TRAINABLE_KINDS and "pretrained" not in model]
    AVAILABLE, LOCAL_FILES = source_subjects(config["data"])
    # Subjects the user left out (e.g. after they failed QC) are in no role; the report lists them.
    EXCLUDED = config["preprocess"]["exclude"]
    APPLY_FILES = apply_scans(config["apply"])
    APPLIED = applied_models(config["apply"], MODELS)
    # (model, scan) -> why: every model on every scan, or with apply.pick_model each scan by the model that fits it.
    APPLY_JOBS = apply_jobs(APPLY_FILES, APPLIED, input_voxel_mm if config["apply"]["pick_model"] else None)
    APPLY_MODELS = list(dict.fromkeys(model for model, _ in APPLY_JOBS))  # the models with a scan to super-resolve
    SPLIT = resolve_split(*without_excluded(config["split"], AVAILABLE, EXCLUDED), config["seed"],
                          train_required=bool(TRAINED), test_required=not APPLY_FILES)
    TRAIN, VAL, TEST = SPLIT["train"], SPLIT["val"], SPLIT["test"]
    SUBJECTS = list(dict.fromkeys(TRAIN + VAL + TEST))
    problem = missing_tool(config["preprocess"]["skull_strip"])
    if problem:
        raise MrisrError(problem)
    if config["data"]["source"] == "hcp":
        check_hcp_credentials(config["data"], SUBJECTS)
except MrisrError as error:
    fail(error)

# Models scored against the HR scan (a cascade's first stage produces a coarser grid and is not).
EVALUATED = [name for name, model in MODELS.items() if all(f == 1 for f in model["output_factor"])]
# Every LR factor a model starts from, by its label in paths (x2, x2x2x4, ...).
FACTORS = {factor_label(model["factor"]): model["factor"] for model in MODELS.values() if model["kind"] != "cascade"}
EVALUATED_FACTORS = sorted({factor_label(MODELS[name]["factor"]) for name in EVALUATED})
# The degradation the pairs are made by (and every model assumes), and those each test subject is scored under.
PAIRS_DEGRADATION = config["pairs"]["degradation"]
EVALUATED_DEGRADATIONS = config["evaluate"]["degradations"]
GPUS = 1 if config["use_gpu"] else 0


def under(degradation):
    """The path part of a degradation's files: none for pairs.degradation (its files keep today's paths), else
    `/<name>`. Rules match it with the `{degradation}` wildcard, which may be empty."""
    return degradation_folder(degradation, PAIRS_DEGRADATION)


def degradation_named(part):
    """The name of the degradation a `{degradation}` wildcard value (a path part of under()) stands for."""
    return part.removeprefix("/") or PAIRS_DEGRADATION


wildcard_constraints:
    subject="[A-Za-z0-9]+",
    model="|".join(MODELS),
    factor="|".join(map(re.escape, FACTORS)),
    degradation="(?:" + "|".join(re.escape(under(name)) for name in EVALUATED_DEGRADATIONS) + ")",


def canonical(value):
    """``value`` with dictionary keys sorted at every level.

    Snakemake compares a rule's params by their text, so the order of keys in
    a config file must not count as a change.
    """
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(item) for item in value]
    return value


def settings(section):
    """A config section as a rule's params."""
    return canonical(config[section])


def source_settings(data):
    """The data source's own settings, minus the subject list: adding a subject refetches nothing."""
    own = dict(data[data["source"]])
    own.pop("subjects", None)
    own.pop("derived_per_volume", None)
    return canonical(own)


def degradation():
    """How the pairs made an LR scan from an HR scan, apart from the factor: the operator every model assumes."""
    return canonical(degradation_of(config))


def degradation_settings(wildcards):
    """The settings of the degradation a job's `{degradation}` wildcard names: only its own change reruns the job."""
    return canonical(config["degradations"][degradation_named(wildcards.degradation)])


def factor_of(model):
    return factor_label(MODELS[model]["factor"])


def hr_file(subject):
    return f"{RESULTS}/preproc/{subject}/T1w_brain.nii.gz"


def mask_file(subject):
    return f"{RESULTS}/preproc/{subject}/brain_mask.nii.gz"


def lr_file(subject, factor, name="lr.nii.gz", part=""):
    """A file of the pair of ``subject`` at ``factor`` made by the degradation whose path part (under()) is ``part``."""
    return f"{RESULTS}/pairs/{subject}/x{factor}{part}/{name}"


def model_file(model):
    """The model file of a model: the pretrained one, or the train rule's output."""
    return MODELS[model].get("pretrained") or f"{RESULTS}/models/{model}/model.pt"


def stages(model):
    """The models a model's super-resolution runs, in turn: a cascade's stages, or itself."""
    return MODELS[model].get("stages", [model])


def training_files(model):
    """HR, LR (at the model's factor) and brain-mask path of each training and validation subject."""
    factor = factor_of(model)
    return {
        f"{kind}_{subject}": path
        for subject in TRAIN + VAL
        for kind, path in (("hr", hr_file(subject)), ("lr", lr_file(subject, factor)), ("mask", mask_file(subject)))
    }


def evaluated_at(factor):
    """The evaluated models that start from LR factor ``factor``."""
    return [name for name in EVALUATED if factor_of(name) == factor]


def validation_files(model):
    """HR, LR (at the model's factor) and brain mask of each subject a model is calibrated on: the validation
    subjects (without any, the first training subject, whose errors understate a held-out subject's)."""
    return {f"{kind}_{subject}": path for subject in VAL or TRAIN[:1]
            for kind, path in (("hr", hr_file(subject)), ("lr", lr_file(subject, factor_of(model))),
                               ("mask", mask_file(subject)))}


def calibrated(model):
    """Whether a model's estimates come with a calibrated error scale and interval: a trained model that produces
    the HR grid, or a pretrained file that holds a calibration; never a cascade."""
    entry = MODELS[model]
    if entry["kind"] == "cascade" or any(f != 1 for f in entry["output_factor"]):
        return False
    if "pretrained" in entry:
        from mrisr.model.modelfile import read_calibration

        return read_calibration(entry["pretrained"]) is not None
    return True


# Models whose estimates come with a calibrated error scale and interval bounds (super_resolve, not super_resolve_raw).
CALIBRATED = [name for name in MODELS if calibrated(name)]


def estimates(subject, factor, name):
    """A file of every evaluated model's estimate of ``subject`` from LR factor ``factor``."""
    return [f"{RESULTS}/sr/{model}/{subject}/{name}" for model in evaluated_at(factor)]


def resolution_label(model):
    """The BIDS ``res-`` label of a model's output grid, e.g. ``1p5mm``."""
    entry = MODELS[model]
    if "pretrained" in entry:
        voxel_mm = model_file_header(entry["pretrained"])["voxel_mm"]
    elif config["preprocess"]["output_space"] == "template":
        voxel_mm = [config["preprocess"]["spacing"] * f for f in entry["output_factor"]]
    else:
        return "native"
    return "x".join(dict.fromkeys(f"{mm:g}".replace(".", "p") for mm in voxel_mm)) + "mm"


def applied(model, scan, suffix):
    """An output of the apply stage, in the BIDS-derivatives layout (one dataset per model)."""
    return (f"{RESULTS}/apply/{model}/sub-{scan}/anat/"
            f"sub-{scan}_res-{resolution_label(model)}_{suffix}")


APPLY_OUTPUTS = {"estimate": "desc-sr_T1w.nii.gz", "sd": "desc-srsd_T1w.nii.gz", "mask": "desc-brain_mask.nii.gz",
                 "sidecar": "desc-sr_T1w.json", "panel": "desc-sr_T1w.png"}
# A calibrated model's error scale and the bounds of its interval at sampler.interval (the level is in the sidecar).
APPLY_CALIBRATED_OUTPUTS = {"scale": "desc-srscale_T1w.nii.gz", "lower": "desc-srlower_T1w.nii.gz",
                            "upper": "desc-srupper_T1w.nii.gz"}


def evaluate_settings():
    """The evaluate section but its list of degradations: scoring one more degradation rescores no other."""
    return {key: value for key, value in settings("evaluate").items() if key != "degradations"}


def metric_files(name):
    """``name`` (a file name pattern under metrics/<subject>/) for every test subject and evaluated degradation."""
    return [f"{RESULTS}/metrics/{subject}{under(degradation)}/{name}"
            for degradation in EVALUATED_DEGRADATIONS for subject in TEST]


def final_outputs():
    outputs = [f"{RESULTS}/report/index.html"] if TEST else []
    if APPLY_FILES:
        outputs.append(f"{RESULTS}/apply/report.html")
    return outputs
