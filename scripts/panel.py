"""Rule panel: slices of every method's estimate of one test subject, side by side."""
from mrisr.evaluation.scoring import draw_panel
from mrisr.workflow import run_rule


def main(snakemake):
    i, params = snakemake.input, snakemake.params
    draw_panel(snakemake.wildcards.subject, params.factor, i.hr, i.lr, i.mask, dict(zip(params.models, i.sr)),
               dict(zip(params.models, i.sr_std)), params.degradation, params.iterations, snakemake.output.panel)


run_rule(snakemake, main)  # noqa: F821
