# Stage 7: one self-contained HTML page a reviewer opens from disk.

# Per test subject: its slice panel at each factor, and each model's calibration table.
PANELS = {s: {f: f"{RESULTS}/figures/{s}_x{f}_panel.png" for f in EVALUATED_FACTORS} for s in TEST}
CALIBRATION = {s: {m: f"{RESULTS}/metrics/{s}/model_{m}_calibration.csv" for m in EVALUATED} for s in TEST}
UNCERTAINTY = {s: {m: f"{RESULTS}/metrics/{s}/model_{m}_uncertainty.csv" for m in EVALUATED} for s in TEST}
RELIABILITY = {s: {m: f"{RESULTS}/metrics/{s}/model_{m}_reliability.csv" for m in EVALUATED} for s in TEST}


rule report:
    input:
        summary=f"{RESULTS}/metrics/summary.csv",
        split=f"{RESULTS}/split.tsv",
        train_logs=expand(f"{RESULTS}/models/{{model}}/train_log.csv", model=TRAINED),
        curves=expand(f"{RESULTS}/models/{{model}}/training_curves.png", model=TRAINED),
        validation=expand(f"{RESULTS}/models/{{model}}/validation.png", model=TRAINED),
        panels=[path for by_factor in PANELS.values() for path in by_factor.values()],
        calibration=[path for by_model in CALIBRATION.values() for path in by_model.values()],
        uncertainty=[path for table in (UNCERTAINTY, RELIABILITY) for by_model in table.values()
                     for path in by_model.values()],
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
        config=canonical({section: value for section, value in config.items() if section != "apply"}),
        models=canonical(MODELS),
        trained=TRAINED,
        panels=PANELS,
        calibration=CALIBRATION,
        uncertainty=UNCERTAINTY,
        reliability=RELIABILITY,
        subjects=SUBJECTS,
        excluded_qc={subject: QC_RECORD.format(subject=subject) for subject in EXCLUDED},
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../../scripts/report.py"
