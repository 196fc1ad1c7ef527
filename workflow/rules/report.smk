# Figures and the HTML report, built from results/tables and results/fits only.


rule report:
    input:
        table=ROOT / "tables/runs.csv",
        fits=ROOT / "fits/fit_summary.csv",
        data=ROOT / "data/summary.png",
    output:
        ROOT / "report.html",
    log:
        ROOT / "logs/report.log",
    conda:
        CONDA_ENV
    params:
        config=CONFIG_FILE,
    shell:
        "jetscale report --config {params.config:q} 2> {log:q}"
