# Figures and the HTML report, built from results/tables and results/fits only (never refits: that is the
# fit rule's output).


rule report:
    input:
        table=paths.runs_table(ROOT),
        fits=paths.fit_summary(ROOT),
        data=paths.data_summary(ROOT),
    output:
        REPORT,
    log:
        paths.log_path(ROOT, "report"),
    conda:
        CONDA_ENV
    params:
        config=CONFIG_FILE,
        # the config sections this stage reads: a change reruns it (rerun-triggers: params)
        settings=PLAN.stage_settings("report"),
    shell:
        "jetscale report --config {params.config:q} --table {input.table:q} --fits {input.fits:q}"
        " --data-summary {input.data:q} --out {output:q} 2> {log:q}"
