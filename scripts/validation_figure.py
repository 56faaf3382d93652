"""Rule validation_figure: a trained model's sampler on a validation subject, beside cubic and HR."""
from mrisr.inference.volume import validation_figure
from mrisr.workflow import run_rule


def main(snakemake):
    validation_figure(snakemake.input.model, snakemake.input.hr, snakemake.input.lr, snakemake.params.sampler,
                      snakemake.params.seed, snakemake.output.validation)


run_rule(snakemake, main)  # noqa: F821
