"""How often the forecast and backtest intervals contain the truth, on synthetic curves with known answers.

    .venv/bin/python benchmarks/forecast_coverage.py [--replications 200] [--seeds 2 3] [--bootstrap 100]

Power law y = 0.04 + 3·n^(−0.45) (and an S-curve floor 0.05, ceiling 0.45, n_c = 2500, k = 2.5) at
n = 100 … 100k (7 sizes) × seeds, Gaussian seed noise. Prints, per curve and seeds per size: the share of
replications whose 95 % forecast interval contains the true n at which the curve reaches the target, and the
share of held-out means (2 largest sizes) inside the backtest's 95 % prediction interval. Nominal: 0.95.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from jetscale.fit.backtest import backtest
from jetscale.fit.forecast import forecast
from jetscale.fit.forms import Domain, powerlaw, scurve

UNIT = Domain(0.0, 1.0, falling=True)  # the synthetic curves are error rates, fitted as the study fits them

SIZES = np.array([100, 300, 1000, 3000, 10000, 30000, 100000], dtype=float)
CURVES = {
    "powerlaw": (powerlaw, (0.04, 3.0, 0.45), 0.002, 0.045),
    "scurve": (scurve, (0.05, 0.45, 2500.0, 2.5), 0.01, 0.15),
}


def true_crossing(form: str, params, target: float) -> float:
    if form == "powerlaw":
        y_inf, a, alpha = params
        return (a / (target - y_inf)) ** (1 / alpha)
    floor, ceiling, n_c, k = params
    s = (target - floor) / (ceiling - floor)
    return n_c * 10 ** (-math.log(s / (1 - s)) / (math.log(10) * k))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replications", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--bootstrap", type=int, default=100)
    args = ap.parse_args()
    print("curve     seeds  forecast_cover  backtest_cover  n_forecast  n_backtest  seconds")
    for form, (func, params, noise, target) in CURVES.items():
        x_true = true_crossing(form, params, target)
        for n_seeds in args.seeds:
            x = np.repeat(SIZES, n_seeds)
            t0 = time.perf_counter()
            hits, covered = [], []
            for rep in range(args.replications):
                y = func(x, *params) + np.random.default_rng([rep, n_seeds]).normal(0, noise, x.size)
                f = forecast(form, x, y, target, bootstrap=args.bootstrap, seed=rep, domain=UNIT)
                if f["x_lo"] is not None or f["x_hi"] is not None:
                    hits.append((f["x_lo"] or 0.0) <= x_true <= (f["x_hi"] or math.inf))
                b = backtest(form, x, y, 2, bootstrap=args.bootstrap, seed=rep, domain=UNIT)
                covered += [p["covered"] for p in b["points"] if p["covered"] is not None]
            print(
                f"{form:9s} {n_seeds:5d}  {np.mean(hits):14.3f}  {np.mean(covered):14.3f}  {len(hits):10d}  "
                f"{len(covered):10d}  {time.perf_counter() - t0:7.1f}"
            )


if __name__ == "__main__":
    main()
