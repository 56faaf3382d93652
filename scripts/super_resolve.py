"""Rule super_resolve: one held-out subject's LR scan to the HR grid with one model (or a cascade)."""
from mrisr.inference.volume import SrOutputs, super_resolve_pair
from mrisr.workflow import run_rule


def main(snakemake):
    i, o = snakemake.input, snakemake.output
    outputs = SrOutputs(o.sr, o.sr_std, o.sr_view_sd, o.get("sr_scale"), o.get("sr_lower"), o.get("sr_upper"),
                        o.get("sr_scale_json"), snakemake.params.interval)
    super_resolve_pair(i.lr, i.grid, list(zip(i.models, snakemake.params.samplers)), outputs, snakemake.params.seed)


run_rule(snakemake, main)  # noqa: F821
