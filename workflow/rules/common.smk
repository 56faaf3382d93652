# Shared by every stage: config validation, the subject list and split, path helpers.
import sys

# Rule scripts import the mrisr package from this checkout, installed or not (e.g. in --sdm conda envs).
sys.path.insert(0, f"{workflow.basedir}/src")

from pathlib import Path

from mrisr.workflow import expose_package

expose_package(f"{workflow.basedir}/src")

from mrisr.config import validate_config
from mrisr.fetch import sample_subjects
from mrisr.hcp import check_access, read_subject_list, s3_client
from mrisr.io import MrisrError
from mrisr.qc import without_excluded
from mrisr.skullstrip import missing_tool
from mrisr.sources import check_local_files, discover_local
from mrisr.split import resolve_split


def fail(message):
    """Stop before any job starts, with one line and no traceback."""
    print(f"mrisr: {message}", file=sys.stderr)
    sys.exit(1)


def source_subjects(data):
    """Subject IDs the data source offers (and, for local data, their files)."""
    if data["source"] == "sample":
        return sample_subjects(data["sample"]["derived_per_volume"]), {}
    if data["source"] == "local":
        local = data.get("local") or {}
        if not local.get("path"):
            raise MrisrError("data.local.path: set it to your folder of NIfTI files or BIDS dataset")
        files = discover_local(local["path"], local.get("pattern", "*.nii*"), local.get("subjects"))
        check_local_files(files)
        return list(files), files
    return read_subject_list(data["hcp"]["subjects"]), {}


def check_hcp_access(data, subjects):
    """Fail before any job when credentials are missing or rejected, or a subject is not in the bucket."""
    hcp = data["hcp"]
    pending = [s for s in subjects if not Path(f"{RESULTS}/raw/{s}/T1w.nii.gz").exists()]
    if pending:
        client = s3_client(hcp.get("aws_profile"), hcp.get("endpoint_url"))
        check_access(client, hcp["bucket"], pending, hcp["file"], hcp["prefix"])


RESULTS = "results"
# Config files given on the command line are merged key by key over config/config.yaml; a split
# given there replaces the default split as a whole (mixing two splits makes no sense).
USER_SPLIT = workflow.config_settings.overwrite_config.get("split")
if USER_SPLIT:
    config["split"] = USER_SPLIT
try:
    validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
    AVAILABLE, LOCAL_FILES = source_subjects(config["data"])
    # Subjects the user left out (e.g. after they failed QC) are in no role; the report lists them.
    EXCLUDED = config["preprocess"]["exclude"]
    SPLIT = resolve_split(*without_excluded(config["split"], AVAILABLE, EXCLUDED), config["seed"])
    TRAIN, VAL, TEST = SPLIT["train"], SPLIT["val"], SPLIT["test"]
    SUBJECTS = list(dict.fromkeys(TRAIN + VAL + TEST))
    problem = missing_tool(config["preprocess"]["skull_strip"])
    if problem:
        raise MrisrError(problem)
    if config["data"]["source"] == "hcp":
        check_hcp_access(config["data"], SUBJECTS)
except MrisrError as error:
    fail(error)

MODEL = "diffusion"
GPUS = 1 if config.get("use_gpu", True) else 0


wildcard_constraints:
    subject="[A-Za-z0-9]+",


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
    return canonical(config.get(section, {}))


def source_settings(data):
    """The data source's own settings, minus the subject list: adding a subject refetches nothing."""
    own = dict(data.get(data["source"]) or {})
    own.pop("subjects", None)
    own.pop("derived_per_volume", None)
    return canonical(own)


def pair_files(subjects):
    """HR, LR and brain-mask paths of each subject, as the training script reads them."""
    return {
        f"{kind}_{subject}": path.format(subject=subject)
        for subject in subjects
        for kind, path in (
            ("hr", f"{RESULTS}/pairs/{{subject}}/hr.nii.gz"),
            ("lr", f"{RESULTS}/pairs/{{subject}}/lr.nii.gz"),
            ("mask", f"{RESULTS}/preproc/{{subject}}/brain_mask.nii.gz"),
        )
    }


def final_outputs():
    return [f"{RESULTS}/report/index.html"]
