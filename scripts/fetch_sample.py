"""Rule fetch (data.source: sample): one embedded sample subject."""
from mrisr.fetch import fetch_sample_subject
from mrisr.workflow import run_rule


def main(snakemake):
    settings = snakemake.params.settings
    fetch_sample_subject(
        snakemake.wildcards.subject, snakemake.output.raw, seed=snakemake.params.seed,
        max_displacement_mm=settings.get("max_displacement_mm", 4.0),
        bias_strength=settings.get("bias_strength", 0.2),
        gamma_range=settings.get("gamma_range", 0.15),
    )


run_rule(snakemake, main)  # noqa: F821 (snakemake is injected by Snakemake)
