# Stage 2: reorientation, N4 bias correction, skull stripping, registration to the template, QC,
# normalisation, crop. A subject failing QC fails its job; its QC image and figures stay under logs/.

QC_IMAGE = "logs/preprocess/{subject}.qc.png"
QC_RECORD = "logs/preprocess/{subject}.qc.csv"  # also read by the report for subjects in preprocess.exclude


rule preprocess:
    input:
        raw=f"{RESULTS}/raw/{{subject}}/T1w.nii.gz",
    output:
        brain=f"{RESULTS}/preproc/{{subject}}/T1w_brain.nii.gz",
        mask=f"{RESULTS}/preproc/{{subject}}/brain_mask.nii.gz",
        transform=f"{RESULTS}/preproc/{{subject}}/xfm_to_template.mat",
        timing=f"{RESULTS}/preproc/{{subject}}/timing.csv",
        qc=report(
            f"{RESULTS}/preproc/{{subject}}/qc.png",
            caption="../report/registration_qc.rst",
            category="Registration QC",
            subcategory="{subject}",
        ),
        qc_csv=f"{RESULTS}/preproc/{{subject}}/qc.csv",
    log:
        # Snakemake removes a failed job's outputs but keeps its logs: the QC record survives a failure.
        log="logs/preprocess/{subject}.log",
        qc=QC_IMAGE,
        qc_csv=QC_RECORD,
    params:
        # Without `exclude`: leaving a subject out reruns nobody else's preprocessing.
        settings={key: value for key, value in settings("preprocess").items() if key != "exclude"},
        seed=config["seed"],
    threads: 1
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/preprocess.py"
