# Data: generate shards (one job each, parallel on a cluster) or ingest user files, then split.
if PLAN.source == "generate":

    rule generate_shard:
        output:
            ROOT / "data/shards/shard-{shard}.parquet",
        log:
            ROOT / "logs/generate/shard-{shard}.log",
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
            directory(ROOT / "data/ingested"),
        log:
            ROOT / "logs/ingest.log",
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
        directory(ROOT / "data/splits"),
    log:
        ROOT / "logs/split.log",
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
        ROOT / "data/splits",
    output:
        png=report(
            ROOT / "data/summary.png",
            caption="../report/data_summary.rst",
            category="Data",
        ),
    log:
        ROOT / "logs/data_summary.log",
    conda:
        CONDA_ENV
    shell:
        "jetscale data-summary --splits {input:q} --out {output.png:q} 2> {log:q}"
