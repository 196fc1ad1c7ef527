# Data: generate shards (one job each, parallel on a cluster) or ingest user files, then split.
if PLAN.source == "generate":

    rule generate_shard:
        output:
            paths.shard_path(ROOT, "{shard}"),
        log:
            paths.log_path(ROOT, "generate", "shard-{shard}"),
        conda:
            CONDA_ENV
        threads: PLAN.resources("generate")["threads"]
        resources:
            mem_mb=PLAN.resources("generate")["mem_mb"],
            runtime=PLAN.resources("generate")["runtime"],
        params:
            config=CONFIG_FILE,
        shell:
            "jetscale generate --config {params.config:q} --shard {wildcards.shard:q}"
            " --workers {threads:q} --out {output:q} 2> {log:q}"

else:

    rule ingest:
        input:
            PLAN.ingest_inputs,
        output:
            directory(paths.ingested_dir(ROOT)),
        log:
            paths.log_path(ROOT, "ingest"),
        conda:
            CONDA_ENV
        params:
            config=CONFIG_FILE,
        shell:
            "jetscale ingest --config {params.config:q} --out {output:q} 2> {log:q}"


rule split:
    input:
        PLAN.shard_inputs,
    output:
        directory(paths.splits_dir(ROOT)),
    log:
        paths.log_path(ROOT, "split"),
    conda:
        CONDA_ENV
    resources:
        mem_mb=PLAN.resources("default")["mem_mb"],
    params:
        config=CONFIG_FILE,
    shell:
        "jetscale split --config {params.config:q} --shards {input:q} --out {output:q} 2> {log:q}"


rule data_summary:
    input:
        paths.splits_dir(ROOT),
    output:
        png=report(
            paths.data_summary(ROOT),
            caption="../report/data_summary.rst",
            category="Data",
        ),
    log:
        paths.log_path(ROOT, "data_summary"),
    conda:
        CONDA_ENV
    shell:
        "jetscale data-summary --splits {input:q} --out {output.png:q} 2> {log:q}"
