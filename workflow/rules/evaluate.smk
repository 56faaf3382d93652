# Stage 6: PSNR/SSIM of the model and the interpolation baselines on the same voxels.


rule evaluate:
    input:
        hr=f"{RESULTS}/pairs/{{subject}}/hr.nii.gz",
        lr=f"{RESULTS}/pairs/{{subject}}/lr.nii.gz",
        mask=f"{RESULTS}/preproc/{{subject}}/brain_mask.nii.gz",
        sr=f"{RESULTS}/sr/{MODEL}/{{subject}}/sr.nii.gz",
        sr_std=f"{RESULTS}/sr/{MODEL}/{{subject}}/sr_std.nii.gz",
    output:
        metrics=f"{RESULTS}/metrics/{{subject}}.csv",
        panel=report(
            f"{RESULTS}/figures/{{subject}}_panel.png",
            caption="../report/panel.rst",
            category="Super-resolution",
            subcategory="{subject}",
        ),
    log:
        "logs/evaluate/{subject}.log",
    threads: 1
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../../scripts/evaluate.py"


rule summarize:
    input:
        metrics=expand(f"{RESULTS}/metrics/{{subject}}.csv", subject=TEST),
    output:
        summary=report(
            f"{RESULTS}/metrics/summary.csv",
            caption="../report/summary.rst",
            category="Metrics",
        ),
    log:
        "logs/summarize.log",
    conda:
        "../../envs/evaluate.yaml"
    script:
        "../../scripts/summarize.py"
