"""Rule pairs: the LR scan of one subject at one factor."""
from mrisr.pairs.degrade import write_pair
from mrisr.workflow import run_rule


def main(snakemake):
    params = snakemake.params
    write_pair(snakemake.input.brain, snakemake.output.lr, snakemake.output.grid, factor=params.factor,
               name=params.name, degradation=params.degradation, seed=params.seed)


run_rule(snakemake, main)  # noqa: F821
