# Pretraining (issue 12). One job per backbone; every fine-tuning cell naming it depends on that one node.
# Finished backbones are protected (read-only): a settings change does not silently re-pretrain them.
if PLAN.has_pool:

    # pretraining.pool: other files as the unlabelled pool, ingested once (inputs only, labels never read).
    rule ingest_pool:
        input:
            PLAN.pool_files,
        output:
            directory(paths.pool_dir(ROOT)),
        log:
            paths.log_path(ROOT, "ingest_pool"),
        conda:
            CONDA_ENV
        resources:
            mem_mb=PLAN.resources("default")["mem_mb"],
        params:
            config=CONFIG_FILE,
            recipe=PLAN.pool_recipe,
        shell:
            "jetscale ingest-pool --config {params.config:q} --input {input:q} --out {output:q} 2> {log:q}"


rule pretrain:
    input:
        splits=ROOT / "data/splits",
        pool=PLAN.pool_input,
    output:
        backbone=protected(ROOT / "pretrain/{backbone}/backbone.pt"),
        record=ROOT / "pretrain/{backbone}/pretrain.json",
    log:
        ROOT / "logs/pretrain/{backbone}.log",
    wildcard_constraints:
        backbone=PLAN.backbone_regex,
    conda:
        CONDA_ENV
    threads: lambda wildcards: PLAN.pretrain_resources(wildcards.backbone)["threads"]
    resources:
        mem_mb=lambda wildcards: PLAN.pretrain_resources(wildcards.backbone)["mem_mb"],
        runtime=lambda wildcards, attempt: PLAN.pretrain_runtime(
            wildcards.backbone, attempt
        ),
        gpu=lambda wildcards: PLAN.pretrain_resources(wildcards.backbone)["gpus"],
    params:
        config=CONFIG_FILE,
        settings=lambda wildcards: PLAN.backbone_hash(wildcards.backbone),
    shell:
        "jetscale pretrain --config {params.config:q} --backbone {wildcards.backbone:q}"
        " --splits {input.splits:q} --pool {input.pool:q}"
        ' --out "$(dirname {output.backbone:q})" 2> {log:q}'


# A fine-tuning cell: the train step of a `pretrain~<method>` cell, after the backbone it names.
rule finetune:
    input:
        splits=ROOT / "data/splits",
        backbone=lambda wildcards: PLAN.backbone_file(wildcards.cell),
    output:
        metrics=paths.run_file(ROOT, "{cell}", paths.METRICS),
        predictions=paths.run_file(ROOT, "{cell}", paths.PREDICTIONS),
    log:
        paths.log_path(ROOT, "train", "{cell}"),
    wildcard_constraints:
        cell=PLAN.finetune_cell_regex,
    conda:
        CONDA_ENV
    threads: lambda wildcards: PLAN.train_resources(wildcards.cell)["threads"]
    resources:
        mem_mb=lambda wildcards: PLAN.train_resources(wildcards.cell)["mem_mb"],
        runtime=lambda wildcards, attempt: PLAN.train_runtime(wildcards.cell, attempt),
        gpu=lambda wildcards: PLAN.train_resources(wildcards.cell)["gpus"],
    params:
        config=CONFIG_FILE,
        settings=lambda wildcards: PLAN.settings_hash(wildcards.cell),
    shell:
        "jetscale train --config {params.config:q} --cell {wildcards.cell:q} --splits {input.splits:q}"
        " --backbone {input.backbone:q} --out {output.metrics:q} 2> {log:q}"


ruleorder: finetune > train
