# Stage 3: spline-downsampled LR scans on their own coarser grid, paired with the HR scan.


rule pairs:
    input:
        brain=f"{RESULTS}/preproc/{{subject}}/T1w_brain.nii.gz",
    output:
        hr=f"{RESULTS}/pairs/{{subject}}/hr.nii.gz",
        lr=f"{RESULTS}/pairs/{{subject}}/lr.nii.gz",
        grid=f"{RESULTS}/pairs/{{subject}}/pair.json",
    log:
        "logs/pairs/{subject}.log",
    params:
        settings=settings("pairs"),
        seed=config["seed"],
    threads: 1
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../../scripts/pairs.py"
