# All finished runs -> one tidy table.


rule collect:
    input:
        PLAN.all_eval_files,
        PLAN.all_backbone_records,
    output:
        paths.runs_table(ROOT),
    log:
        paths.log_path(ROOT, "collect"),
    conda:
        CONDA_ENV
    params:
        **PLAN.collect_params,
        config=CONFIG_FILE,
        # the config sections this stage reads: a change reruns it (rerun-triggers: params)
        settings=PLAN.stage_settings("collect"),
    shell:
        "jetscale collect --config {params.config:q} --out {output:q} 2> {log:q}"
