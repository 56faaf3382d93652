# mrisr: diffusion super-resolution of brain MRI. This file is the table of contents;
# each stage lives in workflow/rules/<stage>.smk and its logic in src/mrisr/.
from snakemake.utils import min_version

min_version("9.0")


# Defaults; a --configfile given on the command line is merged over them.
configfile: f"{workflow.basedir}/config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/pairs.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/super_resolve.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/apply.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
