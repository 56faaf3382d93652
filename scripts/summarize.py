"""Rule summarize: all test subjects' metrics, every method, in one table."""
from mrisr.evaluation.scoring import summarize
from mrisr.workflow import run_rule


def main(snakemake):
    summarize([*snakemake.input.models, *snakemake.input.baselines], snakemake.output.summary)


run_rule(snakemake, main)  # noqa: F821
