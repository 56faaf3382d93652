"""Rule evaluate_baselines: metrics of the classical baselines on one test subject at one factor."""
from mrisr.evaluation.scoring import evaluate_baselines
from mrisr.workflow import run_rule


def main(snakemake):
    i, params = snakemake.input, snakemake.params
    evaluate_baselines(snakemake.wildcards.subject, params.factor, i.hr, i.lr, i.mask, params.settings["baselines"],
                       params.name, params.degradation, params.assumed, params.settings["back_projection_iterations"],
                       params.settings["tissue_classes"], snakemake.output.metrics)


run_rule(snakemake, main)  # noqa: F821
