# One training job per grid cell. `settings` is the cell's resolved settings hash: Snakemake's params
# rerun-trigger retrains exactly the cells whose settings changed, and nothing else.


rule train:
    input:
        ROOT / "data/splits",
    output:
        ROOT / "runs/{cell}/metrics.json",
    log:
        ROOT / "logs/train/{cell}.log",
    conda:
        CONDA_ENV
    threads: lambda wildcards: PLAN.train_resources(wildcards.cell)["threads"]
    resources:
        mem_mb=lambda wildcards: PLAN.train_resources(wildcards.cell)["mem_mb"],
        # a retry after a time limit resumes from the checkpoint and gets more time
        runtime=lambda wildcards, attempt: PLAN.train_runtime(wildcards.cell, attempt),
        gpu=lambda wildcards: PLAN.train_resources(wildcards.cell)["gpus"],
    params:
        config=CONFIG_FILE,
        settings=lambda wildcards: PLAN.settings_hash(wildcards.cell),
    shell:
        "jetscale train --config {params.config:q} --cell {wildcards.cell:q}"
        ' --splits {input:q} --out "$(dirname {output:q})" 2> {log:q}'
