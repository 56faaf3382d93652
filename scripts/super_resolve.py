"""Rule super_resolve: one held-out subject's LR scan to the HR grid with one model (or a cascade)."""
from mrisr.inference.volume import super_resolve_pair
from mrisr.workflow import run_rule


def main(snakemake):
    i = snakemake.input
    super_resolve_pair(i.lr, i.grid, list(zip(i.models, snakemake.params.samplers)), snakemake.output.sr,
                       snakemake.output.sr_std, snakemake.params.seed)


run_rule(snakemake, main)  # noqa: F821
