# Stage 1: raw T1w scans, one folder per subject, with a JSON sidecar saying where each came from.


rule fetch:
    input:
        # HCP: the keys and every subject's file checked once, in the first job (nothing touches S3 at parse time).
        access=[f"{RESULTS}/raw/hcp_access.json"] if config["data"]["source"] == "hcp" else [],
    output:
        raw=f"{RESULTS}/raw/{{subject}}/T1w.nii.gz",
        sidecar=f"{RESULTS}/raw/{{subject}}/T1w.json",
    log:
        "logs/fetch/{subject}.log",
    params:
        settings=source_settings(config["data"]),
        seed=config["seed"],
        source_file=lambda wildcards: LOCAL_FILES.get(wildcards.subject, ""),
        download=f"{RESULTS}/downloads/{{subject}}/T1w.nii.gz",
    threads: 1
    conda:
        "../../envs/preprocess.yaml"
    script:
        f"../../scripts/fetch_{config['data']['source']}.py"


rule check_hcp_access:
    output:
        access=f"{RESULTS}/raw/hcp_access.json",
    log:
        "logs/fetch/hcp_access.log",
    params:
        settings=source_settings(config["data"]),
        subjects=SUBJECTS,
    threads: 1
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/check_hcp_access.py"


rule write_split:
    input:
        sidecars=expand(f"{RESULTS}/raw/{{subject}}/T1w.json", subject=SUBJECTS),
    output:
        split=f"{RESULTS}/split.tsv",
    log:
        "logs/write_split.log",
    params:
        split=canonical(SPLIT),
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/write_split.py"
