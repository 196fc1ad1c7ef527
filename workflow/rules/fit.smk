# Scaling fits (power law, S-curve, BNSL, Chinchilla) on the tidy table.


rule fit:
    input:
        ROOT / "tables/runs.csv",
    output:
        ROOT / "fits/fit_summary.csv",
    log:
        ROOT / "logs/fit.log",
    conda:
        CONDA_ENV
    params:
        config=CONFIG_FILE,
    shell:
        "jetscale fit --config {params.config:q} 2> {log:q}"
