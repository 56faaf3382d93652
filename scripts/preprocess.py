"""Rule preprocess: one raw T1w into template space."""
from mrisr.workflow import run_rule


def main(snakemake):
    from mrisr.preprocess import preprocess_to_files

    output = snakemake.output
    preprocess_to_files(
        snakemake.input.raw, output.brain, output.mask, output.transform, output.timing, output.qc,
        subject=snakemake.wildcards.subject, settings=snakemake.params.settings, seed=snakemake.params.seed,
    )


run_rule(snakemake, main)  # noqa: F821
