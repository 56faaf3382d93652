# Stage 2: N4 bias correction, registration to the template, skull stripping, normalisation, crop.


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
    log:
        "logs/preprocess/{subject}.log",
    params:
        settings=settings("preprocess"),
        seed=config["seed"],
    threads: 1
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/preprocess.py"
