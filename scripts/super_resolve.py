"""Rule super_resolve: one held-out subject's LR scan to the HR grid with one model (or a cascade)."""
from mrisr.sample import super_resolve_file
from mrisr.workflow import run_rule


def main(snakemake):
    super_resolve_file(
        snakemake.input.lr, list(zip(snakemake.input.models, snakemake.params.samplers)), snakemake.output.sr,
        snakemake.output.sr_std, seed=snakemake.params.seed, grid_path=snakemake.input.grid,
    )


run_rule(snakemake, main)  # noqa: F821
