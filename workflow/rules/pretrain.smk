# Pretraining. One job per backbone; every fine-tuning cell naming it depends on that one node (the train rule's
# backbone input).
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
        splits=paths.splits_dir(ROOT),
        pool=PLAN.pool_input,
    output:
        backbone=protected(paths.backbone_path(ROOT, "{backbone}")),
        record=paths.pretrain_record_path(ROOT, "{backbone}"),
    log:
        paths.log_path(ROOT, "pretrain", "{backbone}"),
    wildcard_constraints:
        backbone=PLAN.backbone_regex,
    priority: PLAN.PRETRAIN_PRIORITY  # before any training: its fine-tuning cells wait for it
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
