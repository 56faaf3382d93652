# Stage 7: one self-contained HTML page a reviewer opens from disk.


rule report:
    input:
        summary=f"{RESULTS}/metrics/summary.csv",
        split=f"{RESULTS}/split.tsv",
        train_log=f"{RESULTS}/models/{MODEL}/train_log.csv",
        curves=f"{RESULTS}/models/{MODEL}/training_curves.png",
        validation=f"{RESULTS}/models/{MODEL}/validation.png",
        panels=expand(f"{RESULTS}/figures/{{subject}}_panel.png", subject=TEST),
        qc=expand(f"{RESULTS}/preproc/{{subject}}/qc.png", subject=SUBJECTS),
        timing=expand(f"{RESULTS}/preproc/{{subject}}/timing.csv", subject=SUBJECTS),
        qc_csv=expand(f"{RESULTS}/preproc/{{subject}}/qc.csv", subject=SUBJECTS),
    output:
        html=report(
            f"{RESULTS}/report/index.html",
            caption="../report/html.rst",
            category="Report",
        ),
        provenance=f"{RESULTS}/report/provenance.json",
    log:
        "logs/report.log",
    params:
        config=canonical(config),
        test_subjects=TEST,
        subjects=SUBJECTS,
        excluded_qc={subject: QC_RECORD.format(subject=subject) for subject in EXCLUDED},
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../../scripts/report.py"
