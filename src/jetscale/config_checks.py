"""The semantic checks of a schema-valid config (what a schema cannot express), by area: the results
directory, the grid and its axes, models and their options, pretraining, tuning, fits and flavour pairs, the data.
Every problem is a :class:`ConfigError` naming the key, the bad value and what is allowed."""

from __future__ import annotations

import copy
from typing import Any

from .config_schema import (
    BUILTIN_AXES,
    FITTED_ABSENT_AXES,
    PRETRAIN_AXES,
    SETTABLE_PREFIXES,
    TUNE_METRICS,
    _check_against,
    _parsed_schema,
    axis_values,
    schema,
    set_nested,
    train_pool_per_class,
    training_settings,
    uses_pretraining,
)
from .errors import ConfigError
from .inputs.spec import check_inputs
from .models import catalog
from .models.catalog import width_problem
from .options import OptionError, check_path


def check_semantics(cfg: dict, where: str = "config") -> None:
    """Every semantic check, in a fixed order (the first problem found is the one reported)."""
    from .paths import location_problem

    if problem := location_problem(cfg.get("results", "results")):
        raise ConfigError(f"{where}: results: {problem}")
    stopping = cfg["training"]["stopping"]
    if stopping["min_eval_samples"] > stopping["max_eval_samples"]:
        raise ConfigError(
            f"{where}: training.stopping: min_eval_samples ({stopping['min_eval_samples']}) exceeds "
            f"max_eval_samples ({stopping['max_eval_samples']})"
        )
    check_grid(cfg, where)
    check_fit_targets(cfg, where)
    check_flavor_pairs(cfg, where)
    check_model_sections(cfg, where)
    check_pretraining(cfg, where)
    check_inputs(cfg, where)
    check_tuning(cfg, where)
    check_data(cfg, where)


def check_grid(cfg: dict, where: str) -> None:
    """Models of the catalog, extra axes that are not built in and set what may be set, per-model overrides of
    axes that exist (with values those axes accept), widths each model takes, report axes of the grid."""
    known = catalog.names()
    axes = cfg["grid"]["axes"]
    extra = cfg["grid"].get("extra_axes", {})
    for i, model in enumerate(axes["model"]):
        if model not in known:
            raise ConfigError(f"{where}: grid.axes.model[{i}]: unknown model {model!r}; known models: {list(known)}")
    for name in extra:
        if name in BUILTIN_AXES:
            raise ConfigError(
                f"{where}: grid.extra_axes.{name}: {name!r} is a built-in axis; add values under grid.axes.{name}"
            )
        sets = extra[name]["sets"]
        if not sets.startswith(SETTABLE_PREFIXES):
            raise ConfigError(
                f"{where}: grid.extra_axes.{name}.sets: {sets!r} must start with one of {list(SETTABLE_PREFIXES)}"
            )
        training_keys = schema()["properties"]["training"]["properties"]
        if sets.startswith("training.") and sets.split(".")[1] not in training_keys:
            allowed = sorted(training_keys)
            raise ConfigError(
                f"{where}: grid.extra_axes.{name}.sets: unknown training setting {sets!r}; allowed: {allowed}"
            )
    all_axes = set(BUILTIN_AXES) | set(extra) | (set(PRETRAIN_AXES) if uses_pretraining(cfg) else set())
    for model, overrides in cfg["grid"].get("per_model", {}).items():
        if model not in known:
            raise ConfigError(f"{where}: grid.per_model.{model}: unknown model; known models: {list(known)}")
        for axis in overrides:
            if axis not in all_axes or axis == "model":
                raise ConfigError(
                    f"{where}: grid.per_model.{model}.{axis}: unknown axis; axes: {sorted(all_axes - {'model'})}"
                )
            # the values an axis of grid.axes (or any extra axis) accepts
            root = _parsed_schema()
            sub = root["properties"]["grid"]["properties"]["axes"]["properties"].get(axis)
            _check_against(
                overrides[axis], sub or root["definitions"]["axis_values"], where, ["grid", "per_model", model, axis]
            )
    check_training_axes(cfg, where)
    check_fitted_models(cfg, where)
    for model in (m for m in axes["model"] if not catalog.is_fitted(m)):
        for width in axis_values(cfg, "width", model):
            if not isinstance(width, int) or (problem := width_problem(model, width)):
                raise ConfigError(
                    f"{where}: grid width {width!r} for model {model!r}: {problem or 'must be an integer'}"
                )
    for key in ("color_by", "facet_by"):
        axis = cfg["report"].get(key)
        if axis is not None and axis not in all_axes:
            raise ConfigError(f"{where}: report.{key}: {axis!r} is not a grid axis; axes: {sorted(all_axes)}")


def check_model_sections(cfg: dict, where: str) -> None:
    """training.lr, models.<name> (options each model parses, at every grid width) and resources.train name
    catalog models; extra axes that set model options give values the models accept."""
    known = catalog.names()
    lr = cfg["training"].get("lr")
    for model in lr if isinstance(lr, dict) else ():
        if model not in known:
            raise ConfigError(f"{where}: training.lr.{model}: unknown model; known models: {list(known)}")
    for model, options in cfg.get("models", {}).items():
        if model not in known:
            raise ConfigError(f"{where}: models.{model}: unknown model; known models: {list(known)}")
        try:
            parsed = catalog.get(model).parse_options(options)
        except OptionError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        check_option_widths(cfg, model, parsed, f"models.{model}", where)
    check_model_axes(cfg, where)
    for model in cfg.get("resources", {}).get("train", {}):
        if model not in known:
            raise ConfigError(f"{where}: resources.train.{model}: unknown model; known models: {list(known)}")


def check_data(cfg: dict, where: str) -> None:
    """The data source has what it needs: ingest lists files; generate has enough jets per class for its
    shards, the validation and test sets and the largest n_train (a pool of other files: only with ingest)."""
    classes = cfg["classes"]
    axes = cfg["grid"]["axes"]
    data = cfg["data"]
    if cfg.get("pretraining", {}).get("pool") is not None and data["source"] != "ingest":
        raise ConfigError(
            f"{where}: pretraining.pool: other files as the pretraining pool need data.source: ingest "
            f"(it is {data['source']!r}, whose pool is the tail of the training split); remove pretraining.pool"
        )
    if data["source"] == "ingest" and not data.get("ingest", {}).get("paths"):
        raise ConfigError(f"{where}: data.ingest.paths: source is 'ingest' but no input files are listed")
    if data["source"] == "generate":
        gen = data.setdefault("generate", {})
        pool = train_pool_per_class(cfg) * len(classes)
        largest = max(max(axis_values(cfg, "n_train", m)) for m in axes["model"])
        if gen["n_shards"] > gen["jets_per_class"]:  # every shard holds jets_per_class / n_shards jets of each class
            raise ConfigError(
                f"{where}: data.generate.n_shards: {gen['n_shards']} shards for {gen['jets_per_class']} jets per "
                f"class would leave shards empty; allowed: 1 to {gen['jets_per_class']}"
            )
        if pool <= 0:
            raise ConfigError(
                f"{where}: data.generate.jets_per_class ({gen['jets_per_class']}) must exceed "
                f"val_per_class + test_per_class ({data['val_per_class']} + {data['test_per_class']})"
            )
        if largest > pool:
            raise ConfigError(
                f"{where}: grid.axes.n_train: {largest} is larger than the training pool of {pool} jets "
                "(data.generate.jets_per_class - val_per_class - test_per_class = "
                f"{train_pool_per_class(cfg)} per class "
                f"x {len(classes)} classes); raise data.generate.jets_per_class"
            )


def check_fitted_models(cfg: dict, where: str) -> None:
    """A fitted model (the ``bdt`` baseline) has no width, compute budget, training recipe or particle inputs:
    its cells ignore grid.axes.width/compute and take the default of every extra axis that sets ``training.``
    (see :func:`~jetscale.config_schema.axis_values`); a per-model list that would set them for it, or its
    ``inputs``, is refused."""
    extra = cfg["grid"].get("extra_axes", {})
    for model in catalog.names():
        if not catalog.is_fitted(model):
            continue
        what = f"{model} is a fitted model ({catalog.get(model).summary})"
        for axis, values in cfg["grid"].get("per_model", {}).get(model, {}).items():
            if axis in FITTED_ABSENT_AXES:
                raise ConfigError(f"{where}: grid.per_model.{model}.{axis}: {what}: it has no {axis}; remove the key")
            spec = extra.get(axis)
            if spec and spec["sets"].startswith("training.") and any(v != spec["default"] for v in values):
                raise ConfigError(
                    f"{where}: grid.per_model.{model}.{axis}: {what}: {spec['sets']} does not apply to it; use "
                    f"[{spec['default']!r}]"
                )
        if model in (cfg.get("inputs") or {}):
            raise ConfigError(
                f"{where}: inputs.{model}: {what}: it reads jet observables (jetscale.data.observables), not "
                "particle inputs; remove the key"
            )


def check_option_widths(cfg: dict, model: str, options: Any, key: str, where: str) -> None:
    """Every grid width of ``model`` must suit its options (e.g. GPT heads set in the options divide it)."""
    if model not in cfg["grid"]["axes"]["model"] or catalog.is_fitted(model):
        return
    for width in axis_values(cfg, "width", model):
        if problem := catalog.get(model).width_problem(width, options):
            raise ConfigError(f"{where}: {key}: grid width {width} for model {model!r}: {problem}")


def check_method_options(cfg: dict, name: str, model: str, where: str) -> None:
    """``pretraining.methods.<name>`` keys that are options of the model it pretrains are merged over
    ``models.<model>`` (pretraining and fine-tuning alike): the merge must be valid model options."""
    from .pretrain import METHODS

    method_options = (cfg.get("pretraining", {}).get("methods") or {}).get(name) or {}
    spec = catalog.get(model)
    own = method_options if METHODS[name].model_options_only else spec.own_options(method_options)
    merged = {**(cfg.get("models", {}).get(model) or {}), **own}
    key = f"pretraining.methods.{name} over models.{model}"
    try:
        parsed = spec.parse_options(merged, key)
    except OptionError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    check_option_widths(cfg, model, parsed, key, where)


def check_pretraining(cfg: dict, where: str) -> None:
    from .pretrain import METHODS

    if not uses_pretraining(cfg):
        return
    for name in cfg["grid"].get("extra_axes", {}):
        if name in PRETRAIN_AXES:
            raise ConfigError(
                f"{where}: grid.extra_axes.{name}: {name!r} is a pretraining axis of this grid; rename the extra axis"
            )
    models = cfg["grid"]["axes"]["model"]
    for model in models:
        methods = [v for v in axis_values(cfg, "pretrain", model) if v != "none"]
        for name in methods:
            spec = METHODS[name]
            if not spec.available():
                raise ConfigError(
                    f"{where}: grid.axes.pretrain: method {name!r} is not installed in this version "
                    f"(its module {spec.module} is missing)"
                )
        if methods and not axis_values(cfg, "n_pretrain", model):
            raise ConfigError(f"{where}: grid.axes.n_pretrain: list the unlabelled pool sizes for pretrain {methods}")
    wanted = {v for m in models for v in axis_values(cfg, "pretrain", m)} - {"none"}
    for name in sorted(wanted):
        if METHODS[name].backbone not in models:
            raise ConfigError(
                f"{where}: grid.axes.pretrain: {name!r} pretrains {METHODS[name].backbone!r}, which is not in "
                f"grid.axes.model {models}"
            )
        check_method_options(cfg, name, METHODS[name].backbone, where)
    scan = cfg.get("pretraining", {}).get("loss_scan", {})
    if unknown := sorted(set(scan.get("methods") or []) - wanted):
        raise ConfigError(
            f"{where}: pretraining.loss_scan.methods: {unknown} not in grid.axes.pretrain {sorted(wanted)}"
        )
    for model in {METHODS[n].backbone for n in wanted}:
        for width in scan.get("width", []):
            if problem := width_problem(model, width):
                raise ConfigError(f"{where}: pretraining.loss_scan.width: {width} for {model!r}: {problem}")
    if cfg["data"]["source"] == "generate":
        pool = train_pool_per_class(cfg) * len(cfg["classes"])
        largest = max((max(axis_values(cfg, "n_pretrain", m), default=0) for m in models), default=0)
        largest = max([largest, *scan.get("n_pretrain", [])])
        if largest > pool:
            raise ConfigError(
                f"{where}: grid.axes.n_pretrain: {largest} is larger than the training pool of {pool} jets "
                "(pretraining reads the pool's last n_pretrain jets, without labels); "
                "raise data.generate.jets_per_class"
            )


def check_tuning(cfg: dict, where: str) -> None:
    """``grid.tune``: each key an axis of this grid that can be chosen per cell (not n_train, seed, model or a
    pretraining axis; not the report's colour or facet axis), ``by`` a validation metric, more than one value
    for some model; a ``training.*`` axis must declare as its default what its cells run without the axis."""
    tune = cfg["grid"].get("tune") or {}
    extra = cfg["grid"].get("extra_axes", {})
    axes = [*BUILTIN_AXES, *(PRETRAIN_AXES if uses_pretraining(cfg) else ()), *extra]
    never = {
        "n_train": "the scaling variable",
        "seed": "averaged over",
        "model": "what the series compare",
        **{a: "a pretraining axis (tune an extra axis)" for a in PRETRAIN_AXES},
    }
    if len({spec["by"] for spec in tune.values()}) > 1:
        raise ConfigError(
            f"{where}: grid.tune: the tuning axes select by different metrics "
            f"({ {a: s['by'] for a, s in tune.items()} }); they are chosen jointly, by one metric"
        )
    for axis, spec in tune.items():
        key = f"{where}: grid.tune.{axis}"
        if axis in never:
            raise ConfigError(f"{key}: {axis!r} cannot be a tuning axis: it is {never[axis]}")
        if axis not in axes:
            raise ConfigError(f"{key}: {axis!r} is not a grid axis; axes: {axes} (declare it under grid.extra_axes)")
        if spec["by"] not in TUNE_METRICS:
            raise ConfigError(
                f"{key}.by: {spec['by']!r} is not a validation metric; allowed: {list(TUNE_METRICS)} "
                "(a choice is never made on test metrics)"
            )
        for report_key in ("color_by", "facet_by"):
            if cfg["report"].get(report_key) == axis:
                raise ConfigError(
                    f"{key}: {axis!r} is also report.{report_key}; a tuned axis is chosen per cell, not drawn "
                    f"as series: set report.{report_key} to another axis"
                )
        if all(len(axis_values(cfg, axis, m)) < 2 for m in cfg["grid"]["axes"]["model"]):
            raise ConfigError(f"{key}: the axis has one value for every model; nothing to choose between")
        if axis in extra and extra[axis]["sets"].startswith("training."):
            check_tuned_default(cfg, axis, key)


def check_tuned_default(cfg: dict, axis: str, key: str) -> None:
    """A tuned ``training.*`` axis records its values as the choice: for every model tuned over it (more than
    one value) whose cells take the default, the default must be what those cells run (e.g. the model's
    default learning rate when training.lr is null)."""
    spec = cfg["grid"]["extra_axes"][axis]
    keys = spec["sets"].split(".")[1:]
    for model in cfg["grid"]["axes"]["model"]:
        values = axis_values(cfg, axis, model)
        if len(values) < 2 or spec["default"] not in values:
            continue
        ran: Any = training_settings(cfg, {"model": model, "width": 0, "n_train": 0, "compute": 0, "seed": 0})
        for k in keys:
            ran = ran.get(k) if isinstance(ran, dict) else None
        if ran != spec["default"]:
            raise ConfigError(
                f"{key}: grid.extra_axes.{axis}.default is {spec['default']!r} but {model}'s cells without the "
                f"axis run {spec['sets']} = {ran!r}; declare that as the default (or limit the axis with "
                f"grid.per_model.{model}.{axis})"
            )


def check_fit_targets(cfg: dict, where: str) -> None:
    """fits.metrics, fits.forms and fits.targets: names of the metric and form catalogs; a target's flavor
    exactly for the per-flavor metrics (a class for the per-class ones)."""
    from . import metric_catalog
    from .fit import forms

    fits = cfg.get("fits", {})
    known, known_forms = metric_catalog.names(), forms.names(n_x=1)
    for i, metric in enumerate(fits.get("metrics", [])):
        if metric not in known:
            raise ConfigError(f"{where}: fits.metrics[{i}]: unknown metric {metric!r}; metrics: {known}")
    for i, form in enumerate(fits.get("forms", [])):
        if form not in known_forms:
            raise ConfigError(f"{where}: fits.forms[{i}]: unknown form {form!r}; forms: {known_forms}")
    for i, target in enumerate(fits.get("targets", [])):
        key, metric, flavor = f"{where}: fits.targets[{i}]", target["metric"], target.get("flavor", "")
        if metric not in known:
            raise ConfigError(f"{key}.metric: unknown metric {metric!r}; metrics: {known}")
        if target.get("form", "auto") not in ["auto", *known_forms]:
            raise ConfigError(f"{key}.form: unknown form {target['form']!r}; forms: {['auto', *known_forms]}")
        scope = metric_catalog.get(metric).scope
        if scope == metric_catalog.PER_FLAVOR and flavor not in cfg.get("flavor_pairs", {}):
            raise ConfigError(
                f"{key}.flavor: {metric} is per flavor: give one of {list(cfg.get('flavor_pairs', {}))}, not {flavor!r}"
            )
        if scope == metric_catalog.PER_CLASS and flavor not in cfg.get("classes", []):
            raise ConfigError(f"{key}.flavor: {metric} is per class: give one of {cfg.get('classes', [])}")
        if scope == metric_catalog.GLOBAL and flavor:
            raise ConfigError(f"{key}.flavor: {metric} is not a per-flavor metric; leave flavor out")


def check_training_axes(cfg: dict, where: str = "config") -> None:
    """Every value an extra axis ``sets: training.<key>`` takes (per-model overrides included) must be one the
    schema accepts for that training setting."""
    training_schema = _parsed_schema()["properties"]["training"]
    for name, spec, keys, _model, i, value in _set_values(cfg, "training"):
        training = copy.deepcopy(cfg["training"])
        set_nested(training, keys, value)
        try:
            _check_against(training, training_schema, where, ["training"])
        except ConfigError as exc:
            raise ConfigError(
                f"{where}: grid.extra_axes.{name}.values[{i}]: {value!r} for sets {spec['sets']!r}: "
                + str(exc).removeprefix(f"{where}: ")
            ) from None


def check_model_axes(cfg: dict, where: str = "config") -> None:
    """An extra axis ``sets: model.<path>`` must name an option of every model whose cells take a value other
    than the default, and each such value must be accepted there (merged over that model's config options)."""
    for name, spec, keys, model, i, value in _set_values(cfg, "model"):
        options = copy.deepcopy(cfg.get("models", {}).get(model) or {})
        set_nested(options, keys, value)
        try:
            check_path(catalog.get(model).options, keys, value, f"models.{model}")
            catalog.get(model).parse_options(options)
        except OptionError as exc:
            hint = f" (limit the axis with grid.per_model.{model}.{name}: [{spec['default']!r}])"
            raise ConfigError(
                f"{where}: grid.extra_axes.{name}.values[{i}]: {value!r} for sets {spec['sets']!r}: {exc}"
                + (hint if "names no option" in str(exc) else "")
            ) from None


def _set_values(cfg: dict, root: str):
    """(axis name, axis spec, keys below ``root``, model, index, value) for every value other than the default
    that an extra axis ``sets: <root>.<keys>`` takes for a model of the grid (per-model overrides included)."""
    for name, spec in cfg["grid"].get("extra_axes", {}).items():
        first, *keys = spec["sets"].split(".")
        if first != root:
            continue
        for model in cfg["grid"]["axes"]["model"]:
            for i, value in enumerate(axis_values(cfg, name, model)):
                if value != spec["default"]:
                    yield name, spec, keys, model, i, value


def check_flavor_pairs(cfg: dict, where: str) -> None:
    """Each flavour pairs two different classes of ``classes`` (quark, antiquark), and a class is in one pair
    only: ``{b: [b, b]}`` has no charge flip to measure, and overlapping pairs would count one jet twice."""
    classes = cfg["classes"]
    owner: dict[str, str] = {}
    for flavor, pair in cfg.get("flavor_pairs", {}).items():
        for name in pair:
            if name not in classes:
                raise ConfigError(f"{where}: flavor_pairs.{flavor}: class {name!r} is not in classes {classes}")
        if pair[0] == pair[1]:
            raise ConfigError(
                f"{where}: flavor_pairs.{flavor}: {list(pair)} pairs class {pair[0]!r} with itself; give the quark "
                "and the antiquark class"
            )
        for name in pair:
            if name in owner:
                raise ConfigError(
                    f"{where}: flavor_pairs.{flavor}: class {name!r} is already in flavor_pairs.{owner[name]}; "
                    "a class belongs to one pair only"
                )
            owner[name] = flavor
