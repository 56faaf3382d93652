"""Rule write_split: every subject's role and origin."""
from mrisr.data.split import write_split
from mrisr.workflow import run_rule


def main(snakemake):
    write_split(snakemake.params.split, list(snakemake.input.sidecars), snakemake.output.split)


run_rule(snakemake, main)  # noqa: F821
