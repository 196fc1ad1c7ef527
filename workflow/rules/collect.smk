# All finished runs -> one tidy table.


rule collect:
    input:
        PLAN.all_eval_files,
        PLAN.all_backbone_records,
    output:
        ROOT / "tables/runs.csv",
    log:
        ROOT / "logs/collect.log",
    conda:
        CONDA_ENV
    params:
        config=CONFIG_FILE,
    shell:
        "jetscale collect --config {params.config:q} 2> {log:q}"
