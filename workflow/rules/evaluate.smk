# Per-run metrics from the test-set predictions.


rule evaluate:
    input:
        ROOT / "runs/{cell}/metrics.json",
    output:
        ROOT / "runs/{cell}/eval.json",
    log:
        ROOT / "logs/evaluate/{cell}.log",
    conda:
        CONDA_ENV
    params:
        config=CONFIG_FILE,
    shell:
        'jetscale evaluate --config {params.config:q} --run "$(dirname {input:q})" 2> {log:q}'
