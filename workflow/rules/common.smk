# Shared by every stage: config validation, the subject list and split, path helpers.
import os
import sys

# Rule scripts import the mrisr package from this checkout, installed or not (e.g. in --sdm conda envs).
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [f"{workflow.basedir}/src", os.environ.get("PYTHONPATH")])
)
sys.path.insert(0, f"{workflow.basedir}/src")

from mrisr.config import check_subjects, validate_config
from mrisr.fetch import sample_subjects
from mrisr.io import MrisrError


def fail(message):
    """Stop before any job starts, with one line and no traceback."""
    print(f"mrisr: {message}", file=sys.stderr)
    sys.exit(1)


try:
    validate_config(config, workflow.source_path("../schemas/config.schema.yaml"))
    if config["data"]["source"] == "sample":
        AVAILABLE = sample_subjects(config["data"]["sample"]["derived_per_volume"])
    else:
        fail(f"data.source {config['data']['source']!r} is not available in this version")
    check_subjects(config["split"], AVAILABLE)
except MrisrError as error:
    fail(error)

SPLIT = config["split"]
TRAIN, VAL, TEST = SPLIT["train"], SPLIT["val"], SPLIT["test"]
SUBJECTS = list(dict.fromkeys(TRAIN + VAL + TEST))
MODEL = "diffusion"
RESULTS = "results"
GPUS = 1 if config.get("use_gpu", True) else 0


wildcard_constraints:
    subject="[A-Za-z0-9]+",


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
