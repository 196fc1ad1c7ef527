# Grid and path helpers shared by all rules. The heavy lifting is in jetscale.workflow.
from pathlib import Path

from jetscale import paths
from jetscale.launch.slurm import check_workflow_partitions
from jetscale.workflow import StudyPlan, jetscale_command, shell_prefix

PLAN = StudyPlan.from_snakemake(config, workflow)
ROOT = PLAN.root
CONFIG_FILE = PLAN.write_effective_config()
REPORT = str(paths.report_path(ROOT))
CONDA_ENV = "../../envs/jetscale.yaml"
# `jetscale` in every rule is the one of the interpreter running Snakemake (a shell function defined by the prefix;
# no PATH needed, on every executor), or under --sw-env conda / apptainer the job environment's own.
JETSCALE_PREFIX = shell_prefix(
    jetscale_command(workflow.deployment_settings.deployment_method),
    strict_bash=Path(shell.get_executable() or "").name == "bash",
)
if JETSCALE_PREFIX:
    shell.prefix(JETSCALE_PREFIX)


wildcard_constraints:
    cell=PLAN.cell_regex,
    shard=r"\d{4}",
    n_train=r"\d+",


onstart:
    PLAN.on_start()
    check_workflow_partitions(workflow)
