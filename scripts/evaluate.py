"""Rule evaluate: metrics of one model's estimate of one test subject."""
from mrisr.evaluation.scoring import evaluate_model
from mrisr.workflow import run_rule


def main(snakemake):
    i, o, params = snakemake.input, snakemake.output, snakemake.params
    scale, sidecar = i.calibrated or (None, None)
    evaluate_model(snakemake.wildcards.subject, snakemake.wildcards.model, params.kind, params.factor, i.hr, i.lr,
                   i.mask, i.sr, i.sr_std, i.sr_view_sd, scale, sidecar, params.name, params.degradation,
                   params.tissue_classes, o.metrics, o.calibration, o.uncertainty, o.reliability)


run_rule(snakemake, main)  # noqa: F821
