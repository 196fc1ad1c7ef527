# Per-run metrics from the test-set predictions (both written by the train rule, metrics.json last).


rule evaluate:
    input:
        metrics=paths.run_file(ROOT, "{cell}", paths.METRICS),
        predictions=paths.run_file(ROOT, "{cell}", paths.PREDICTIONS),
    output:
        paths.run_file(ROOT, "{cell}", paths.EVAL),
    log:
        paths.log_path(ROOT, "evaluate", "{cell}"),
    conda:
        CONDA_ENV
    params:
        config=CONFIG_FILE,
        # the config sections this stage reads: a change reruns it (rerun-triggers: params)
        settings=PLAN.stage_settings("evaluate"),
    shell:
        "jetscale evaluate --config {params.config:q} --metrics {input.metrics:q}"
        " --predictions {input.predictions:q} --out {output:q} 2> {log:q}"
