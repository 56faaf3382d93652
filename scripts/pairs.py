"""Rule pairs: an HR/LR pair from one preprocessed scan."""
from mrisr.degrade import make_pair
from mrisr.workflow import run_rule


def main(snakemake):
    settings = snakemake.params.settings
    make_pair(
        snakemake.input.brain, snakemake.output.hr, snakemake.output.lr, snakemake.output.grid,
        factor=settings["factor"], order=settings.get("order", 3), antialias=settings.get("antialias", True),
        noise_std=settings.get("noise_std", 0.0), seed=snakemake.params.seed,
    )


run_rule(snakemake, main)  # noqa: F821
