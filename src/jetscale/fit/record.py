"""A fit record (``results/fits/*.json``): :class:`FitRecord` declares its keys once.

Every target of the study (:mod:`jetscale.fit.study`: scaling, loss_vs_data, loss_vs_params, L(N, D),
loss_vs_compute) and every mirage check (:mod:`jetscale.fit.outlook`) is one record: what was fitted (``kind``,
``metric``, ``flavor``, the ``series`` and its ``label``), the axes (``x``, for L(N, D) also ``x2``; ``y``), the
``points``, each form's fit (``fits``: form -> :meth:`jetscale.fit.fitting.Fit.record`) and the form comparison.
Keys only some kinds carry are left out of the others: ``x2`` (L(N, D)), ``domain`` (scaling: the physical range
of the fitted quantity), ``thresholded_metric``, ``auc`` and ``mirage`` (mirage checks; a scaling record that
was checked gets ``mirage`` later). ``_file`` is the file name (not written into the file); ``_index`` (mirage
checks) the position of the checked scaling record. Read by fit_summary.csv (:mod:`jetscale.fit.summary`),
the forecasts and backtests, and the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..records import ABSENT, Record, json_key


@dataclass(frozen=True, kw_only=True)
class FitRecord(Record):
    file: str = json_key("_file")
    index: int = json_key("_index", default=ABSENT)
    kind: str
    metric: str
    flavor: str
    series: dict
    label: str
    x: str
    x2: str = ABSENT
    y: str
    thresholded_metric: str = ABSENT
    points: dict
    domain: list = ABSENT
    fits: dict
    comparison: dict | None
    auc: Any = ABSENT
    mirage: Any = ABSENT
