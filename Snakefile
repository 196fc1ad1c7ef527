# jetscale study DAG: config -> grid -> data -> train -> evaluate -> collect -> fit -> report.
# Rules stay thin: each calls one `jetscale <stage>` command; all logic lives in src/jetscale/.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


# The config is validated by jetscale itself (StudyPlan, in common.smk) against workflow/schemas/ plus the
# checks a schema cannot express, so an error is one line naming the key, as for every jetscale command.


# Cheap aggregation steps run where Snakemake runs, not as cluster jobs.
localrules:
    all,
    data_summary,
    input_stats,
    collect,
    fit,
    report,


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/collect.smk"
include: "workflow/rules/fit.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        REPORT,
