# Grid and path helpers shared by all rules. The heavy lifting is in jetscale.workflow.
from jetscale import paths
from jetscale.launch.slurm import check_workflow_partitions
from jetscale.workflow import StudyPlan

PLAN = StudyPlan.from_snakemake(config)
ROOT = PLAN.root
CONFIG_FILE = PLAN.write_effective_config()
REPORT = str(paths.report_path(ROOT))
CONDA_ENV = "../../envs/jetscale.yaml"


wildcard_constraints:
    cell=PLAN.cell_regex,
    shard=r"\d{4}",
    n_train=r"\d+",


onstart:
    PLAN.on_start()
    check_workflow_partitions(workflow)
