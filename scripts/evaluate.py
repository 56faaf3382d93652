"""Rule evaluate: metrics and slice panel of one test subject."""
from mrisr.metrics import evaluate_subject
from mrisr.workflow import run_rule


def main(snakemake):
    i, o = snakemake.input, snakemake.output
    evaluate_subject(snakemake.wildcards.subject, i.hr, i.lr, i.mask, i.sr, i.sr_std, o.metrics, o.panel)


run_rule(snakemake, main)  # noqa: F821
