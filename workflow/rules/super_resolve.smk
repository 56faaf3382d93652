# Stage 5: patch-wise DDIM sampling of each held-out subject; mean of samples and their sd.


rule super_resolve:
    input:
        lr=f"{RESULTS}/pairs/{{subject}}/lr.nii.gz",
        grid=f"{RESULTS}/pairs/{{subject}}/pair.json",
        model=f"{RESULTS}/models/{MODEL}/model.pt",
    output:
        sr=f"{RESULTS}/sr/{MODEL}/{{subject}}/sr.nii.gz",
        sr_std=f"{RESULTS}/sr/{MODEL}/{{subject}}/sr_std.nii.gz",
    log:
        f"logs/super_resolve/{MODEL}/{{subject}}.log",
    params:
        sample=settings("sample"),
        seed=config["seed"],
    threads: 1
    resources:
        gpu=GPUS,
    conda:
        "../../envs/pytorch.yaml"
    script:
        "../../scripts/super_resolve.py"
