"""Rule summarize: all test subjects' metrics in one table."""
from mrisr.metrics import summarize
from mrisr.workflow import run_rule


def main(snakemake):
    summarize(list(snakemake.input.metrics), snakemake.output.summary)


run_rule(snakemake, main)  # noqa: F821
