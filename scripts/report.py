"""Rule report: the self-contained HTML report."""
import tempfile

from mrisr.provenance import provenance
from mrisr.evaluation.report import build_report
from mrisr.workflow import run_rule


def main(snakemake):
    i, params = snakemake.input, snakemake.params
    with tempfile.TemporaryDirectory() as work_dir:
        build_report(
            i.summary, i.split, train_logs=dict(zip(params.trained, i.train_logs)),
            curves=dict(zip(params.trained, i.curves)), validation=dict(zip(params.trained, i.validation)),
            panels=params.panels, calibration=params.calibration, uncertainty=params.uncertainty,
            reliability=params.reliability, qc_pngs=dict(zip(params.subjects, i.qc)),
            timing_csvs=list(i.timing), qc_csvs=list(i.qc_csv), excluded_qc_csvs=dict(params.excluded_qc),
            config=params.config, models=params.models, provenance=provenance(snakemake.scriptdir),
            html_path=snakemake.output.html, provenance_path=snakemake.output.provenance, work_dir=work_dir,
        )


run_rule(snakemake, main)  # noqa: F821
