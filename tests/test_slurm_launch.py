"""The launch package without a Slurm cluster: profile resolution, the preempt protocol, distributed env vars,
and the submitit local executor (interrupt -> checkpoint -> requeue -> resume) with the toy training cell."""

from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

import pytest
import yaml

from jetscale import signals as preempt
from slurm_helpers import PROFILE, REPO
from tiny_config import default_raw_config

TOY = "jetscale.launch.toy:toy_train_cell"


def test_profile_name_slurm_resolves_from_repo_root(monkeypatch):
    """`snakemake --profile slurm` typed in the repo root finds workflow/profiles/slurm (via the ./slurm link)."""
    from snakemake.cli import get_profile_dir

    monkeypatch.chdir(REPO)
    directory, config_file = get_profile_dir("slurm")
    assert config_file.resolve() == (PROFILE / "config.yaml").resolve()
    profile = yaml.safe_load(config_file.read_text())
    assert profile["executor"] == "slurm"
    assert profile["slurm-status-command"] == "squeue"  # sacct-less clusters otherwise hang the plugin
    assert profile["default-resources"]["slurm_partition"]
    assert profile["retries"] >= 1  # a TIMEOUT train job is resubmitted and resumes from its checkpoint


def test_stop_on_signals_turns_signal_into_stop_request():
    preempt.reset()
    with preempt.stop_on_signals():
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.05)
        assert preempt.stop_requested() and preempt.stop_signal() == signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    preempt.reset()


def test_toy_cell_stops_at_step_boundary_and_resumes(tmp_path):
    from jetscale.launch.toy import toy_train_cell

    cfg = {"toy": {"steps": 6, "step_s": 0.0, "checkpoint_every": 100}}
    preempt.reset()
    preempt.request_stop()
    with pytest.raises(preempt.StopForCheckpoint):
        toy_train_cell(cfg, "c", None, tmp_path)
    preempt.reset()
    metrics = toy_train_cell(cfg, "c", None, tmp_path)
    assert metrics["total"] == 21 and metrics["resumed_at"] == [1]


def test_distributed_env_from_job_environment(monkeypatch):
    from jetscale.launch.submit import setup_distributed_env

    # setenv (not delenv of an unset key) makes monkeypatch restore these afterwards: a leaked WORLD_SIZE=8
    # would make every later training in this worker wait for 7 ranks that never come
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(key, "unset")
    env = SimpleNamespace(
        hostnames=["gpu07", "gpu08"], job_id="123456", global_rank=5, num_tasks=8, local_rank=1, num_nodes=2
    )
    values = setup_distributed_env(env)
    assert values == {
        "RANK": "5",
        "WORLD_SIZE": "8",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "4",
        "MASTER_ADDR": "gpu07",
        "MASTER_PORT": str(20000 + 123456 % 20000),
    }
    assert os.environ["MASTER_ADDR"] == "gpu07"


def test_unknown_cluster_is_refused(tmp_path):
    from jetscale.errors import JetscaleError
    from jetscale.launch.submit import make_executor

    with pytest.raises(JetscaleError, match="unknown cluster 'kubernetes'"):
        make_executor(tmp_path, cluster="kubernetes")


def test_launch_cli_is_registered():
    from jetscale.cli import build_parser

    args = build_parser().parse_args(["launch", "--cells", "a", "b", "--partition", "gpu", "--timeout-min", "30"])
    assert args.cells == ["a", "b"] and args.partition == "gpu" and args.timeout_min == 30


@pytest.mark.xdist_group("slurm")
def test_local_executor_interrupted_job_resumes(tmp_path):
    """submitit's local executor: same TrainCell, same requeue path as Slurm, no cluster needed (~10 s)."""
    from jetscale.launch.submit import make_executor, submit_cells, wait

    executor = make_executor(tmp_path / "submitit", cluster="local", timeout_min=5)
    cfg = {"results": str(tmp_path / "results"), "toy": {"steps": 8, "step_s": 0.5, "checkpoint_every": 100}}
    (job,) = submit_cells(executor, cfg, ["cell~toy"], fn=TOY)
    log = tmp_path / "results" / "runs" / "cell~toy" / "steps.log"
    deadline = time.time() + 60
    while not (log.exists() and "start" in log.read_text()):
        assert time.time() < deadline
        time.sleep(0.2)
    time.sleep(1.2)
    # submitit's LocalJob._interrupt() signals its controller, which does not forward USR2: signal the task,
    # as the local controller does itself shortly before timeout_min.
    pid = int(log.read_text().split("pid=")[1].split()[0])
    os.kill(pid, signal.SIGUSR2)
    (result,) = wait([job])
    assert result["total"] == 36 and len(result["resumed_at"]) == 1


def test_launch_cli_debug_cluster_runs_toy_cells(tmp_path, capsys):
    from jetscale.cli import main
    from jetscale.grid import cell_ids

    cfg = default_raw_config(tmp_path / "results")
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(cfg))
    cell = cell_ids(cfg)[0]
    assert main(["launch", "--config", str(config), "--cells", "no~such/cell", "--cluster", "debug"]) == 2
    assert "not a cell of" in capsys.readouterr().err
    assert (
        main(
            [
                "launch",
                "--config",
                str(config),
                "--cells",
                cell,
                "--cluster",
                "debug",
                "--toy-steps",
                "2",
                "--folder",
                str(tmp_path / "submitit"),
            ]
        )
        == 0
    )
    metrics = tmp_path / "results" / "runs" / cell / "metrics.json"
    assert yaml.safe_load(metrics.read_text())["total"] == 3
