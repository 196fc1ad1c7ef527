"""Per-class physics figures of freshly generated jets under a detector/process/clustering setting.

    .venv/bin/python benchmarks/detector_physics.py [--events 2000] [--detector '{"pid": "dedx_tof"}']
        [--process zh_nunu|nunu_h] [--clustering '{"algorithm": "ee_genkt"}'] [--seed 7]

Generates ``--events`` events of every Higgs decay mode (all 11 classes) and prints per class: jets, constituents
per jet, tracks with |d0|/σ(d0) > 3 per jet, K± share of tracks, fraction of tracks with |d0| > 10 mm, and the
share of jets whose leading track has the sign of the quark charge. Uses all constituents (no padding cap).
Only the generator API common to every version is used, so the same script measures an older checkout
(``PYTHONPATH=<checkout>/src``) for before/after comparisons; options an old generator lacks must stay unset.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

QUARK_SIGN = {"b": -1, "bbar": 1, "c": 1, "cbar": -1, "s": -1, "sbar": 1, "u": 1, "ubar": -1, "d": -1, "dbar": 1}


def class_figures(table, classes) -> list[dict]:
    parts, jets = table.particles, table.jets
    jet_of = np.repeat(np.arange(len(table)), table.counts)
    track = parts["charge"] != 0
    sig = np.abs(parts["d0"]) / np.where(parts["d0_err"] > 0, parts["d0_err"], np.inf)
    displaced = np.bincount(jet_of, weights=track & (sig > 3), minlength=len(table))
    # Leading track: the first charged particle of each (energy-ordered) jet.
    first_track = np.full(len(table), -1)
    idx = np.flatnonzero(track)[::-1]
    first_track[jet_of[idx]] = idx
    rows = []
    for i, name in enumerate(classes):
        sel = jets["label"] == i
        tr = track & sel[jet_of]
        lead = first_track[sel]
        lead = lead[lead >= 0]
        agree = np.mean(np.sign(parts["charge"][lead]) == QUARK_SIGN[name]) if name in QUARK_SIGN else np.nan
        rows.append(
            {
                "class": name,
                "jets": int(sel.sum()),
                "constituents": float(jets["n_particles"][sel].mean()),
                "displaced_per_jet": float(displaced[sel].mean()),
                "kaon_share": float(parts["is_charged_kaon"][tr].mean()),
                "far_d0_fraction": float((np.abs(parts["d0"][tr]) > 10.0).mean()),
                "leading_charge_agreement": float(agree),
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="events per Higgs decay mode (default 2000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--detector", default=None, help="JSON object of data.generate.detector overrides")
    parser.add_argument("--process", default=None, help="zh_nunu | nunu_h (default: the generator's)")
    parser.add_argument("--clustering", default=None, help="JSON object of data.generate.clustering")
    args = parser.parse_args()
    os.environ.setdefault("JETSCALE_NO_PROGRESS", "1")
    from jetscale.data.generate import DEFAULT_CLASSES, generate_events
    from jetscale.data.store import JetTable

    kw = {}
    if args.detector:
        kw["detector"] = json.loads(args.detector)
    if args.process:
        kw["process"] = args.process
    if args.clustering:
        kw["clustering"] = json.loads(args.clustering)
    classes = list(DEFAULT_CLASSES)
    start = time.perf_counter()
    table = JetTable.concat(list(generate_events(args.events, args.seed, classes=classes, workers=args.workers, **kw)))
    took = time.perf_counter() - start
    rows = class_figures(table, classes)
    print(
        f"{'class':>6} {'jets':>6} {'const/jet':>9} {'|d0|/σ>3 /jet':>13} {'K± share':>8} {'|d0|>10mm':>9} "
        f"{'lead q':>6}"
    )
    for r in rows:
        print(
            f"{r['class']:>6} {r['jets']:>6} {r['constituents']:>9.1f} {r['displaced_per_jet']:>13.2f} "
            f"{100 * r['kaon_share']:>7.1f}% {100 * r['far_d0_fraction']:>8.2f}% "
            f"{100 * r['leading_charge_agreement']:>5.1f}%"
        )
    track = table.particles["charge"] != 0
    print(
        f"all tracks: {track.sum()}, |d0| > 10 mm: {100 * (np.abs(table.particles['d0'][track]) > 10).mean():.2f}%; "
        f"{len(table)} jets in {took:.0f} s ({args.workers} worker(s); settings {kw or 'defaults'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
