"""Adversarial and careless-user probes of the command line: input -> exact message -> verdict.

Builds a tiny synthetic study (run directories without training, ROOT files written with uproot) in a scratch
directory and runs every probe through ``jetscale.cli.main`` in this process (a probe whose exception escapes
``main`` is a traceback). Prints the markdown table of docs/probes.md and the count per verdict.

    PYTHONPATH=src python benchmarks/probes.py [--keep DIR]

Verdicts: *refused* (exit != 0 with one line naming the problem), *handled* (exit 0 and the expected outcome,
e.g. a broken cell listed as missing), *traceback*, *accepted* (a bad input taken silently), *leak/loss* (a
file outside the results dir written, a link followed).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import errno
import io
import json
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from jetscale.cli import main, one_line  # noqa: E402

SECRET = "api_key=hunter2"


def run(argv: list[str]) -> tuple[int | str, str]:
    """(exit status or 'traceback', stderr + stdout) of one jetscale command in this process."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse
            rc = exc.code
        except Exception:
            return "traceback", traceback.format_exc().strip().splitlines()[-1]
    return rc, (err.getvalue() + out.getvalue()).strip()


def call(func) -> tuple[int | str, str]:
    """A library-level probe: 0 and its return text, 2 and a JetscaleError's message, or a traceback."""
    from jetscale.errors import JetscaleError

    try:
        return 0, str(func())
    except JetscaleError as exc:
        return 2, str(exc)
    except Exception:
        return "traceback", traceback.format_exc().strip().splitlines()[-1]


def last_error_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower() or "refused" in ln.lower()]
    return (errors or lines or [""])[-1]


class Study:
    """A scratch study: config, synthetic run dirs, ROOT inputs, shards."""

    def __init__(self, tmp: Path):
        from jetscale.config import load_config
        from jetscale.evaluate.synthetic import write_synthetic_study

        self.tmp = tmp
        raw = yaml.safe_load((REPO / "config.yaml").read_text())
        raw["results"] = str(tmp / "results")
        raw["grid"]["axes"].update(model=["particlenet"], n_train=[100, 300, 1000, 3000], seed=[0])
        raw["grid"]["per_model"] = {}
        raw["grid"]["extra_axes"] = {}
        raw["fits"]["bootstrap"] = 5
        self.raw = raw
        self.config = self.write_config(raw, "config.yaml")
        self.cfg = load_config(self.config)
        self.cells = write_synthetic_study(self.cfg, jets_per_class=20)
        for cid in self.cells:
            assert run(["evaluate", "--config", self.config, "--run", str(self.run_dir(cid))])[0] == 0
        assert run(["collect", "--config", self.config])[0] == 0
        (tmp / "secret.txt").write_text(SECRET)

    def write_config(self, raw: dict, name: str) -> str:
        path = self.tmp / name
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return str(path)

    def variant(self, mutate, name="variant.yaml") -> str:
        raw = copy.deepcopy(self.raw)
        mutate(raw)
        return self.write_config(raw, name)

    def run_dir(self, cid: str) -> Path:
        return Path(self.cfg["results"]) / "runs" / cid

    def fresh_run(self, name: str) -> tuple[Path, Path]:
        """A copy of the first cell's metrics.json + predictions.parquet in a scratch dir (evaluate --predictions)."""
        d = self.tmp / "scratch" / name
        d.mkdir(parents=True)
        src = self.run_dir(self.cells[0])
        shutil.copy(src / "predictions.parquet", d / "predictions.parquet")
        shutil.copy(src / "metrics.json", d / "metrics.json")
        return d, d / "predictions.parquet"


def root_inputs(tmp: Path) -> Path:
    from test_data_ingest import jetclass_arrays, write_root

    d = tmp / "inputs"
    d.mkdir()
    for i in range(2):
        write_root(d / f"good{i}.root", jetclass_arrays(40, seed=i)[0])
    os.symlink(d / "good0.root", d / "link.root")
    shutil.copy(d / "good0.root", d / "copy.root")
    os.mkfifo(d / "fifo.root")
    (d / "adir.root").mkdir()
    return d


def probes(study: Study, inputs: Path) -> list[tuple[str, str, object]]:
    """(probe, expected verdict, thunk returning (rc, text))."""
    tmp, cfg, config = study.tmp, study.cfg, study.config
    root = Path(cfg["results"])
    out = []

    def add(name, expect, thunk):
        out.append((name, expect, thunk))

    # ---- one file read twice, other studies' shards -------------------------------------------------------
    add(
        "ingest `--input good0.root 'good*.root'` (a file listed twice)",
        "refused",
        lambda: run(["ingest", "--input", f"{inputs}/good0.root", f"{inputs}/good*.root", "--out", f"{tmp}/i1"]),
    )
    add(
        "ingest good0.root and a symlink to it",
        "refused",
        lambda: run(["ingest", "--input", f"{inputs}/good0.root", f"{inputs}/link.root", "--out", f"{tmp}/i2"]),
    )
    add(
        "ingest good0.root and `cp good0.root copy.root`",
        "refused",
        lambda: run(["ingest", "--input", f"{inputs}/good0.root", f"{inputs}/copy.root", "--out", f"{tmp}/i3"]),
    )

    def shards():
        from jetscale.data.ingest import ingest_files
        from test_data_ingest import CLASSES

        return ingest_files(
            [inputs / "good0.root", inputs / "good1.root"],
            "jetclass",
            tmp / "shards",
            classes=CLASSES,
            data_fingerprint="f" * 16,
        ), CLASSES

    def split_twice():
        from jetscale.data.splits import build_splits

        s, classes = shards()
        return build_splits(
            [s[0], s[1], s[0]], tmp / "sp", classes=classes, val_per_class=1, test_per_class=1, n_particles=8
        )

    def split_copy():
        from jetscale.data.splits import build_splits

        s, classes = shards()
        shutil.copy(s[0], tmp / "copied.parquet")
        return build_splits(
            [*s, tmp / "copied.parquet"], tmp / "sp", classes=classes, val_per_class=1, test_per_class=1, n_particles=8
        )

    def split_other_study():
        from jetscale.data.splits import build_splits

        s, classes = shards()
        return build_splits(
            s,
            tmp / "sp",
            classes=classes,
            val_per_class=1,
            test_per_class=1,
            n_particles=8,
            study_fingerprint="0" * 16,
        )

    add("split given the same shard twice", "refused", lambda: call(split_twice))
    add("split given a copy of a shard", "refused", lambda: call(split_copy))
    add("split given another study's shards (other data fingerprint)", "refused", lambda: call(split_other_study))

    def restored_mtime():
        from jetscale.data.manifest import changes, manifest

        f = tmp / "edited.root"
        f.write_bytes(b"a" * 100)
        rec = manifest([f])
        st = os.stat(f)
        f.write_bytes(b"b" * 100)
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
        found = changes(rec, [f])
        return "; ".join(found) if found else "ACCEPTED: no change found"

    add("input edited with size kept and mtime restored (cp -p / tar x)", "handled", lambda: call(restored_mtime))

    # ---- disclosure and links ----------------------------------------------------------------------------
    def report_with(link_target=None, regular=None, argv=()):
        summary = root / "data" / "summary.png"
        summary.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(summary):
            summary.unlink()
        if link_target:
            os.symlink(link_target, summary)
        if regular:
            summary.write_text(regular)
        try:
            rc, text = run(["report", "--config", config, *argv])
        finally:
            if os.path.lexists(summary):
                summary.unlink()
        report = root / "report.html"
        if report.is_file() and "aHVudGVy" in report.read_text():
            return "leak", "the secret is in report.html"
        return rc, text

    add(
        "results/data/summary.png a symlink to a secret",
        "refused",
        lambda: report_with(link_target=tmp / "secret.txt"),
    )
    add(
        "`report --data-summary /path/secret.txt`",
        "refused",
        lambda: report_with(argv=["--data-summary", str(tmp / "secret.txt")]),
    )
    add("results/data/summary.png a text file", "refused", lambda: report_with(regular=SECRET))

    def lock_link():
        from jetscale.results_dir import hold_lock

        victim = tmp / "victim.txt"
        victim.write_text("precious")
        lock = root / ".jetscale" / "lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        if os.path.lexists(lock):
            lock.unlink()
        os.symlink(victim, lock)
        try:
            hold_lock(lock, "probe")
        finally:
            lock.unlink()
            if victim.read_text() != "precious":
                raise AssertionError("LOSS: the lock's target was overwritten")

    add("results/.jetscale/lock a symlink to a user file", "refused", lambda: call(lock_link))

    def train_lock_link():
        run_dir = study.run_dir(study.cells[1])
        victim = tmp / "victim2.txt"
        victim.write_text("precious")
        os.symlink(victim, run_dir / ".train.lock")
        try:
            rc, text = run(
                [
                    "train",
                    "--config",
                    config,
                    "--cell",
                    study.cells[1],
                    "--splits",
                    str(tmp / "nosplits"),
                    "--out",
                    str(run_dir),
                ]
            )
        finally:
            (run_dir / ".train.lock").unlink()
        if victim.read_text() != "precious":
            return "loss", "the lock's target was overwritten"
        return rc, text

    add("runs/<cell>/.train.lock a symlink to a user file", "refused", train_lock_link)

    def dangling_history():
        from jetscale.train.history import archive

        run_dir = study.run_dir(study.cells[2])
        target = archive(run_dir, "probe") / "eval.json"
        if os.path.lexists(target):
            target.unlink()
        outside = tmp / "outside-eval.json"
        os.symlink(outside, target)
        try:
            rc, text = run(["evaluate", "--config", config, "--run", str(run_dir)])
        finally:
            target.unlink()
        if outside.exists():
            return "leak", f"{outside} created outside results/"
        return rc, text

    add("history/<hash>/eval.json a dangling symlink out of results/", "refused", dangling_history)

    # ---- analysis settings ---------------------------------------------------------------------------------
    add(
        "flavor_pairs `{b: [b, b]}`",
        "refused",
        lambda: run(["plan", "--config", study.variant(lambda c: c.update(flavor_pairs={"b": ["b", "b"]}))]),
    )
    add(
        "flavor_pairs `{b: [b, bbar], x: [bbar, c]}` (overlapping)",
        "refused",
        lambda: run(
            [
                "plan",
                "--config",
                study.variant(lambda c: c.update(flavor_pairs={"b": ["b", "bbar"], "x": ["bbar", "c"]})),
            ]
        ),
    )

    def stage_rerun():
        from jetscale.config import load_config
        from jetscale.workflow import StudyPlan

        before = StudyPlan(cfg)
        after = StudyPlan(load_config(study.variant(lambda c: c["flavor_pairs"].pop("d"))))
        rerun = [
            s for s in ("evaluate", "collect", "fit", "report") if before.stage_settings(s) != after.stage_settings(s)
        ]
        return "reruns " + ", ".join(rerun) if rerun else "ACCEPTED: nothing reruns"

    add("flavor_pairs changed on a finished study", "handled", lambda: call(stage_rerun))

    # ---- malformed files -----------------------------------------------------------------------------------
    def evaluate_with_metrics(text, name):
        d, pred = study.fresh_run(name)
        (d / "metrics.json").write_text(text)
        return run(
            [
                "evaluate",
                "--config",
                config,
                "--predictions",
                str(pred),
                "--metrics",
                str(d / "metrics.json"),
                "--out",
                str(d / "eval.json"),
            ]
        )

    add("evaluate: metrics.json not JSON", "refused", lambda: evaluate_with_metrics("{not json", "m1"))
    add("evaluate: metrics.json a list", "refused", lambda: evaluate_with_metrics("[1, 2]", "m2"))

    def collect_with(cell_index, name, text):
        path = study.run_dir(study.cells[cell_index]) / name
        saved = path.read_text() if path.exists() else None
        path.write_text(text)
        try:
            rc, got = run(["collect", "--config", config])
        finally:
            if saved is None:
                path.unlink()
            else:
                path.write_text(saved)
        listed = str(study.cells[cell_index]) in (root / "tables" / "missing.csv").read_text()
        return (rc if listed or rc else "accepted"), last_error_line(got) if rc else _missing_line(
            got, study.cells[cell_index]
        )

    add("collect: a truncated eval.json", "handled", lambda: collect_with(0, "eval.json", '{"accuracy": 0.5, "fla'))
    add(
        "collect: eval.json with accuracy 1e300",
        "handled",
        lambda: collect_with(0, "eval.json", _eval_with(study, accuracy=1e300)),
    )
    add(
        "collect: eval.json with a negative log_loss",
        "handled",
        lambda: collect_with(0, "eval.json", _eval_with(study, log_loss=-3.0)),
    )

    def status_with_failure(text):
        run_dir = study.run_dir(study.cells[3])
        metrics = (run_dir / "metrics.json").read_text()
        (run_dir / "metrics.json").unlink()
        (run_dir / "failure.json").write_text(text)
        try:
            rc, got = run(["status", "--config", config])
        finally:
            (run_dir / "failure.json").unlink()
            (run_dir / "metrics.json").write_text(metrics)
        line = next((ln for ln in got.splitlines() if ln.startswith("FAILED")), got.splitlines()[-1] if got else "")
        if "\x1b" in line:
            return "accepted", "raw escape sequence printed: " + repr(line)
        return rc, line

    add("status: failure.json a JSON string", "handled", lambda: status_with_failure('"out of memory"'))
    add(
        "status: failure reason with terminal escapes `\\x1b[2J`",
        "handled",
        lambda: status_with_failure(json.dumps({"reason": "boom\x1b[2J\x1b[31mall fine"})),
    )

    def backbone_without_keys():
        import torch

        from jetscale.pretrain.finetune import read_backbone

        path = tmp / "backbone.pt"
        torch.save({"weights": torch.zeros(2)}, path)
        return read_backbone(path, "0" * 16)

    add("fine-tuning: backbone.pt without its keys", "refused", lambda: call(backbone_without_keys))

    png = tmp / "figure.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    add(
        "`fit --csv` given a PNG",
        "refused",
        lambda: run(["fit", "--csv", str(png), "--x", "n", "--y", "v", "--form", "powerlaw"]),
    )

    def confusion(text):
        path = tmp / "conf.csv"
        classes = cfg["classes"]
        rows = [",".join(["truth", *classes])]
        for i, c in enumerate(classes):
            rows.append(",".join([c, *(text if (i, j) == (0, 0) else "1" for j in range(len(classes)))]))
        path.write_text("\n".join(rows) + "\n")
        return run(["metrics", "--config", config, "--confusion", str(path)])

    add("metrics: confusion table with text", "refused", lambda: confusion("many"))
    add("metrics: confusion table with 1e300", "refused", lambda: confusion("1e300"))

    def predictions(mutate, name):
        d, pred = study.fresh_run(name)
        frame = pd.read_parquet(pred)
        frame = mutate(frame)
        frame.to_parquet(pred, index=False)
        return run(["evaluate", "--config", config, "--predictions", str(pred), "--out", str(d / "eval.json")])

    score = f"score_{cfg['classes'][0]}"
    add("evaluate: a NaN score", "refused", lambda: predictions(lambda f: f.assign(**{score: np.nan}), "p1"))
    add("evaluate: a negative score", "refused", lambda: predictions(lambda f: f.assign(**{score: -0.5}), "p2"))
    add("evaluate: an infinite score", "refused", lambda: predictions(lambda f: f.assign(**{score: np.inf}), "p3"))
    add("evaluate: no predictions (0 rows)", "refused", lambda: predictions(lambda f: f.iloc[:0], "p4"))
    add("evaluate: label 99 (outside the classes)", "refused", lambda: predictions(lambda f: f.assign(label=99), "p5"))
    add("evaluate: label 1e30", "refused", lambda: predictions(lambda f: f.assign(label=1e30), "p6"))

    def int_label_1e30():
        from jetscale.data.ingest import ingest_files, load_mapping
        from test_data_ingest import CLASSES, jetclass_arrays, write_root

        arrays, labels, _ = jetclass_arrays(10)
        arrays = {k: v for k, v in arrays.items() if not k.startswith("label_")}
        arrays["label"] = labels.astype(np.float64)
        arrays["label"][3] = 1e30
        path = write_root(tmp / "int.root", arrays)
        mapping = {k: v for k, v in load_mapping("jetclass").items() if k != "_where"}
        mapping["labels"] = {"branch": "label", "values": {i: name for i, name in enumerate(CLASSES)}}
        mpath = tmp / "int.yaml"
        mpath.write_text(yaml.safe_dump(mapping))
        return ingest_files([path], str(mpath), tmp / "int-out")

    add("ingest: an integer label branch holding 1e30", "refused", lambda: call(int_label_1e30))

    # ---- arguments and settings out of range -----------------------------------------------------------------
    def train_cell(out: str, *extra: str):
        return run(["train", "--config", config, "--cell", study.cells[0], "--splits", "x", "--out", out, *extra])

    add("`train --threads -3`", "refused", lambda: train_cell("y", "--threads", "-3"))
    add("`train --processes 100000`", "refused", lambda: train_cell("y", "--processes", "100000"))
    add(
        "`train --processes 64` on a 2-core machine",
        "refused",
        lambda: train_cell(str(tmp / "p64"), "--processes", str((os.cpu_count() or 1) + 1)),
    )
    add(
        "grid seed 2^32",
        "refused",
        lambda: run(["plan", "--config", study.variant(lambda c: c["grid"]["axes"].update(seed=[2**32]))]),
    )
    add(
        "`forecast --target nan`",
        "refused",
        lambda: run(["forecast", "--csv", str(png), "--x", "n", "--y", "v", "--target", "nan"]),
    )
    add(
        "`fit --csv t.csv --bootstrap 1000000000`",
        "refused",
        lambda: run(
            ["fit", "--csv", str(png), "--x", "n", "--y", "v", "--form", "powerlaw", "--bootstrap", "1000000000"]
        ),
    )
    add(
        "`launch --mem-gb -4`",
        "refused",
        lambda: run(["launch", "--config", config, "--all", "--cluster", "debug", "--mem-gb", "-4"]),
    )
    add(
        "`launch --cpus -1`",
        "refused",
        lambda: run(["launch", "--config", config, "--all", "--cluster", "debug", "--cpus", "-1"]),
    )
    add(
        "`results: /etc/jetscale-probe`",
        "refused",
        lambda: run(["plan", "--config", study.variant(lambda c: c.update(results="/etc/jetscale-probe"))]),
    )
    add(
        "a 300-character path component in `results:`",
        "refused",
        lambda: run(["collect", "--config", study.variant(lambda c: c.update(results=str(tmp / ("r" * 300))))]),
    )

    # ---- misleading messages ---------------------------------------------------------------------------------
    add(
        "ingest input a FIFO",
        "refused",
        lambda: run(["ingest", "--input", f"{inputs}/fifo.root", "--out", f"{tmp}/i4"]),
    )
    add(
        "ingest input a directory",
        "refused",
        lambda: run(["ingest", "--input", f"{inputs}/adir.root", "--out", f"{tmp}/i5"]),
    )
    add("ingest input /dev/zero", "refused", lambda: run(["ingest", "--input", "/dev/zero", "--out", f"{tmp}/i6"]))

    def angle_bracket():
        from jetscale.config import load_config
        from jetscale.workflow import StudyPlan

        odd = inputs / "a<b>.root"
        shutil.copy(inputs / "good1.root", odd)
        try:
            raw = copy.deepcopy(study.raw)
            raw["data"] = {**raw["data"], "source": "ingest", "ingest": {"paths": [str(odd)], "mapping": "jetclass"}}
            raw["results"] = str(tmp / "results-ingest")
            return StudyPlan(load_config(raw)).ingest_inputs
        finally:
            odd.unlink()

    add("an input file named `a<b>.root`", "refused", lambda: call(angle_bracket))
    add(
        "disk full while writing (ENOSPC), as the command line shows it",
        "refused",
        lambda: (2, one_line(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "results/tables/runs.csv"))),
    )
    add(
        "read-only results dir (EROFS), as the command line shows it",
        "refused",
        lambda: (2, one_line(OSError(errno.EROFS, os.strerror(errno.EROFS), "results/tables/runs.csv"))),
    )
    return out


def _eval_with(study: Study, **values) -> str:
    doc = json.loads((study.run_dir(study.cells[0]) / "eval.json").read_text())
    doc.update(values)
    return json.dumps(doc)


def _missing_line(text: str, cid: str) -> str:
    return next((ln.strip() for ln in text.splitlines() if cid in ln), "listed in missing.csv")


def verdict(expect: str, rc, text: str) -> str:
    if rc == "traceback":
        return "traceback"
    if rc in ("leak", "loss", "accepted"):
        return rc
    if "ACCEPTED" in text:
        return "accepted"
    if expect == "refused":
        return "refused" if rc not in (0, None) else "accepted"
    return "handled" if rc in (0, None) else "refused"


def main_(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="scratch directory to use and keep (default: a temporary one, removed)")
    args = parser.parse_args(argv)
    os.environ.setdefault("JETSCALE_NO_PROGRESS", "1")
    os.environ["JETSCALE_FIT_WORKERS"] = "1"
    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="jetscale-probes-"))
    tmp.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        study = Study(tmp)
        inputs = root_inputs(tmp)
        rows, counts = [], {}
        for name, expect, thunk in probes(study, inputs):
            rc, text = thunk()
            text = text if isinstance(text, str) else str(text)
            shown = last_error_line(text).replace(str(tmp), "$TMP")
            shown = shown.replace("|", "\\|").replace("\x1b", "\\x1b")
            if len(shown) > 260:
                shown = shown[:120] + " ... " + shown[-130:]
            v = verdict(expect, rc, text)
            counts[v] = counts.get(v, 0) + 1
            rows.append(f"| {name} | `{shown}` | {v} |")
    finally:
        os.chdir(cwd)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("| input | message (exact; $TMP = scratch dir) | verdict |\n|---|---|---|")
    print("\n".join(rows))
    print("\ncounts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main_())
