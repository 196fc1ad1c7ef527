"""Analysis settings: flavour pairs are sane before any job, and each analysis stage's rule carries a hash of
the settings it reads, so changing one reruns that stage (the end-to-end check is in test_study_e2e)."""

from __future__ import annotations

import copy

import pytest

from jetscale.config import load_config
from jetscale.errors import ConfigError
from jetscale.workflow import StudyPlan


@pytest.mark.parametrize(
    "pairs, expected",
    [
        ({"b": ["b", "b"]}, "flavor_pairs.b: ['b', 'b'] pairs class 'b' with itself"),
        ({"b": ["b", "bbar"], "x": ["bbar", "c"]}, "flavor_pairs.x: class 'bbar' is already in flavor_pairs.b"),
        ({"b": ["b", "top"]}, "flavor_pairs.b: class 'top' is not in classes"),
    ],
)
def test_bad_flavor_pairs_are_refused_up_front(default_config_dict, pairs, expected):
    raw = copy.deepcopy(default_config_dict)
    raw["flavor_pairs"] = pairs
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        load_config(raw)


def _plan(raw, tmp_path) -> StudyPlan:
    raw = copy.deepcopy(raw)
    raw["results"] = str(tmp_path / "results")
    return StudyPlan(load_config(raw))


def test_stage_settings_follow_what_each_stage_reads(default_config_dict, tmp_path):
    base = _plan(default_config_dict, tmp_path)
    stages = ("evaluate", "collect", "fit", "report")
    before = {s: base.stage_settings(s) for s in stages}

    def changed(mutate) -> set[str]:
        raw = copy.deepcopy(default_config_dict)
        mutate(raw)
        plan = _plan(raw, tmp_path)
        return {s for s in stages if plan.stage_settings(s) != before[s]}

    assert changed(lambda c: c["flavor_pairs"].pop("d")) == set(stages)
    assert changed(lambda c: c["fits"].update(bootstrap=7)) == {"fit", "report"}
    assert changed(lambda c: c["report"].update(confusion_n_train=200)) == {"report"}
    assert changed(lambda c: c["training"].update(weight_decay=0.05)) == set()


def test_every_analysis_rule_passes_its_stage_settings():
    from pathlib import Path

    rules = Path(__file__).resolve().parents[1] / "workflow" / "rules"
    for stage in ("evaluate", "collect", "fit", "report"):
        assert f'settings=PLAN.stage_settings("{stage}")' in (rules / f"{stage}.smk").read_text(), stage
