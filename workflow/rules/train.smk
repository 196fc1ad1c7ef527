# One training job per grid cell (and one input-statistics job per training-subset size). `settings` is the
# cell's resolved settings hash: Snakemake's params rerun-trigger retrains exactly the cells whose settings
# changed, and nothing else.


rule input_stats:
    input:
        paths.splits_dir(ROOT),
    output:
        paths.input_stats_path(paths.splits_dir(ROOT), "{n_train}"),
    log:
        paths.log_path(ROOT, "input_stats", "n_train~{n_train}"),
    priority: PLAN.INPUT_STATS_PRIORITY  # the trainings of this size wait for it
    conda:
        CONDA_ENV
    shell:
        "jetscale input-stats --splits {input:q} --n-train {wildcards.n_train:q} --out {output:q} 2> {log:q}"


rule train:
    input:
        splits=paths.splits_dir(ROOT),
        # the training subset's input statistics, recorded once beside the splits (cells of raw inputs: none)
        stats=lambda wildcards: PLAN.input_stats(wildcards.cell),
        # a fine-tuning cell (pretrain~<method>): the backbone.pt it loads, after the one pretrain job making it
        # (`jetscale train` finds it at this place itself); a cell trained from scratch: none
        backbone=lambda wildcards: PLAN.backbone_input(wildcards.cell),
    output:
        metrics=paths.run_file(ROOT, "{cell}", paths.METRICS),
        predictions=paths.run_file(ROOT, "{cell}", paths.PREDICTIONS),
    log:
        paths.log_path(ROOT, "train", "{cell}"),
    # the largest training sets first: the longest jobs start early and the short ones fill the cores at the end
    priority: lambda wildcards: PLAN.train_priority(wildcards.cell)
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
        " --splits {input.splits:q} --out {output.metrics:q} 2> {log:q}"
