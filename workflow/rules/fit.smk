# Scaling fits (power law, S-curve, BNSL, Chinchilla) on the tidy table.


rule fit:
    input:
        paths.runs_table(ROOT),
    output:
        paths.fit_summary(ROOT),
    log:
        paths.log_path(ROOT, "fit"),
    conda:
        CONDA_ENV
    params:
        config=CONFIG_FILE,
        # the config sections this stage reads: a change reruns it (rerun-triggers: params)
        settings=PLAN.stage_settings("fit"),
    shell:
        "jetscale fit --config {params.config:q} --table {input:q} --out {output:q} 2> {log:q}"
