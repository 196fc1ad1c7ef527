"""Load and validate a study configuration; the one place defaults live.

``load_config`` reads YAML, validates it against ``schemas/config.schema.yaml`` (filling schema defaults), then
runs the semantic checks a schema cannot express (known models, widths per model, axes that exist, ...).
Every problem raises :class:`ConfigError` naming the key, the bad value and what is allowed.
"""

from __future__ import annotations

import copy
import functools
import math
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .inputs.spec import check_inputs
from .io import not_a_file
from .models import catalog
from .models.catalog import width_problem
from .models.external import register_config_models
from .options import OptionError, check_path

BUILTIN_AXES: tuple[str, ...] = ("model", "width", "n_train", "compute", "seed")
# Pretraining axes (issue 12): in cell ids only for fine-tuning cells; from-scratch cells (pretrain 'none')
# keep the ids and settings they had before these axes existed.
PRETRAIN_AXES: tuple[str, ...] = ("pretrain", "n_pretrain", "finetune")
# Where an extra axis may write: per-run training settings or the cell's model options.
SETTABLE_PREFIXES: tuple[str, ...] = ("training.", "model.")


@functools.lru_cache(maxsize=1)
def _parsed_schema() -> dict:
    return yaml.safe_load(resources.files("jetscale").joinpath("schemas/config.schema.yaml").read_text())


def schema() -> dict:
    """The config JSON schema, parsed once per process (a copy, so callers cannot alter the cached one)."""
    return copy.deepcopy(_parsed_schema())


# Values a config may expand to (YAML aliases included): far above any real study, far below an alias bomb.
MAX_CONFIG_VALUES = 200_000


def load_config(source: str | Path | dict, *, where: str | None = None, config_files: list | None = None) -> dict:
    """Return the validated config (a new dict, defaults filled in) from a YAML path or a dict.

    Refused before anything runs, with the key named: YAML that expands to more than MAX_CONFIG_VALUES values
    (an alias bomb), NaN/inf numbers, schema violations, and what :func:`check_semantics` checks. A ``null``
    where the schema wants a mapping resets that mapping to its default (how an overlay config empties one,
    since overlays merge mappings key by key).

    Models from the user's files (``models.<name>.source``) are registered in the catalog on the way (see
    :mod:`jetscale.models.external`); a relative source resolves against the config file naming it: ``source``
    when it is a path, else the one of ``config_files`` (merged in that order) that names it."""
    if isinstance(source, dict):
        check_values(source, where or "config")
        raw, where = copy.deepcopy(source), where or "config"
    else:
        path = Path(source)
        where = where or str(path)
        if not path.is_file():
            raise ConfigError(not_a_file(path, "config file"))
        try:
            raw = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of keys, got {type(raw).__name__}")
    if not isinstance(source, dict):
        check_values(raw, where)
    reset_nulled_mappings(raw, _parsed_schema())
    validate_schema(raw, where)
    files = [Path(f) for f in (config_files or [])] if isinstance(source, dict) else [Path(source)]
    register_config_models(raw, where, files)
    check_semantics(raw, where)
    return raw


def check_values(raw: Any, where: str) -> None:
    """Refuse NaN/inf numbers (naming the key) and configs that expand to more than MAX_CONFIG_VALUES values.

    Shared sub-trees (YAML aliases) are counted once per use but walked once, so an alias bomb is refused in
    linear time instead of being expanded."""
    sizes: dict[int, int] = {}

    def walk(node: Any, path: list) -> int:
        if isinstance(node, float) and not math.isfinite(node):
            raise ConfigError(f"{where}: {_key_path(path)}: {node!r} is not allowed; numbers must be finite")
        if not isinstance(node, dict | list):
            return 1
        if id(node) in sizes:
            return sizes[id(node)]
        items = node.items() if isinstance(node, dict) else enumerate(node)
        total = 1
        for key, value in items:
            total += walk(value, [*path, key])
            if total > MAX_CONFIG_VALUES:
                raise ConfigError(
                    f"{where}: {_key_path(path) or '(top level)'}: expands to more than {MAX_CONFIG_VALUES} "
                    "values (YAML aliases?); a study config is far smaller"
                )
        sizes[id(node)] = total
        return total

    walk(raw, [])


def reset_nulled_mappings(raw: dict, schema_node: dict) -> None:
    """Drop keys whose value is null where the schema wants a mapping (so the default applies)."""
    for key, sub in schema_node.get("properties", {}).items():
        if key not in raw or not isinstance(sub, dict):
            continue
        if raw[key] is None and sub.get("type") == "object":
            del raw[key]
        elif isinstance(raw[key], dict):
            reset_nulled_mappings(raw[key], sub)


def validate_schema(cfg: dict, where: str = "config") -> None:
    """jsonschema validation that also fills in defaults; the first error names its key path."""
    import jsonschema

    validator_cls = _defaults_filling(jsonschema.Draft202012Validator)
    validator = validator_cls(schema())
    errors = sorted(validator.iter_errors(cfg), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        raise ConfigError(f"{where}: {describe_schema_error(err)}")


def describe_schema_error(err) -> str:
    key = _key_path(err.absolute_path) or "(top level)"
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed)) if isinstance(err.instance, dict) else []
        return f"{key}: unknown key(s) {extra}; allowed: {allowed}"
    if err.validator == "enum":
        return f"{key}: {err.instance!r} is not allowed; allowed values: {err.validator_value}"
    if err.validator == "required":
        return f"{key}: {err.message}"
    if err.validator == "pattern":  # names that reach paths and shell commands keep to a safe alphabet
        return f"{key}: {err.instance!r} does not match the safe pattern {err.validator_value!r}"
    return f"{key}: bad value {err.instance!r}: {err.message}"


def _key_path(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _defaults_filling(base):
    import jsonschema

    validate_props = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": set_defaults})


def run_knobs(section: str = "training") -> tuple[str, ...]:
    """Keys of a config section marked ``x-run-knob`` in the schema: speed/placement, never in a settings hash."""
    props = _parsed_schema()["properties"][section]["properties"]
    return tuple(key for key, sub in props.items() if sub.get("x-run-knob"))


def hashed_section(section: str, values: dict, budget: str | None = None) -> dict:
    """``values`` of a config section without its run knobs, without x-hash-omit-default keys at default, and
    without keys that only another kind of ``budget`` reads (schema ``x-budget``: auto | fixed)."""
    props = _parsed_schema()["properties"][section]["properties"]
    out = {}
    for key, value in values.items():
        sub = props.get(key, {})
        if sub.get("x-run-knob") or (sub.get("x-hash-omit-default") and value == sub.get("default")):
            continue
        if budget is not None and sub.get("x-budget", budget) != budget:
            continue
        out[key] = copy.deepcopy(value)
    return out


def check_semantics(cfg: dict, where: str = "config") -> None:
    from .paths import location_problem

    if problem := location_problem(cfg.get("results", "results")):
        raise ConfigError(f"{where}: results: {problem}")
    known = catalog.names()
    axes = cfg["grid"]["axes"]
    extra = cfg["grid"].get("extra_axes", {})
    stopping = cfg["training"]["stopping"]
    if stopping["min_eval_samples"] > stopping["max_eval_samples"]:
        raise ConfigError(
            f"{where}: training.stopping: min_eval_samples ({stopping['min_eval_samples']}) exceeds "
            f"max_eval_samples ({stopping['max_eval_samples']})"
        )
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
    for model in axes["model"]:
        for width in axis_values(cfg, "width", model):
            if not isinstance(width, int) or (problem := width_problem(model, width)):
                raise ConfigError(
                    f"{where}: grid width {width!r} for model {model!r}: {problem or 'must be an integer'}"
                )
    for key in ("color_by", "facet_by"):
        axis = cfg["report"].get(key)
        if axis is not None and axis not in all_axes:
            raise ConfigError(f"{where}: report.{key}: {axis!r} is not a grid axis; axes: {sorted(all_axes)}")
    check_fit_targets(cfg, where)
    check_flavor_pairs(cfg, where)
    classes = cfg["classes"]
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
    check_pretraining(cfg, where)
    check_inputs(cfg, where)
    check_tuning(cfg, where)
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


def check_option_widths(cfg: dict, model: str, options: Any, key: str, where: str) -> None:
    """Every grid width of ``model`` must suit its options (e.g. GPT heads set in the options divide it)."""
    if model not in cfg["grid"]["axes"]["model"]:
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


def uses_pretraining(cfg: dict) -> bool:
    """Whether any model's cells include fine-tuning cells (a pretrain value other than 'none')."""
    grid = cfg["grid"]
    values = list(grid["axes"].get("pretrain", ["none"]))
    for override in grid.get("per_model", {}).values():
        values += list(override.get("pretrain", []))
    return any(v != "none" for v in values)


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


# Validation metrics a tuning axis may select on (collect's columns of metrics.json) -> the better direction.
TUNE_METRICS: dict[str, str] = {"val_loss": "min", "val_accuracy": "max"}


def tune_axes(cfg: dict) -> list[str]:
    """The grid's tuning axes (``grid.tune``), in config order."""
    return list(cfg["grid"].get("tune") or {})


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


def _check_against(value: Any, sub: dict, where: str, path: list) -> None:
    """Validate ``value`` against a sub-schema of the config schema; an error names ``path`` + the inner key."""
    import jsonschema

    validator = jsonschema.Draft202012Validator({**sub, "definitions": _parsed_schema()["definitions"]})
    errors = list(validator.iter_errors(value))
    if errors:
        err = jsonschema.exceptions.best_match(errors)
        err.path.extendleft(reversed(path))  # absolute_path reads path
        raise ConfigError(f"{where}: {describe_schema_error(err)}")


def check_training_axes(cfg: dict, where: str = "config") -> None:
    """Every value an extra axis ``sets: training.<key>`` takes (per-model overrides included) must be one the
    schema accepts for that training setting."""
    training_schema = _parsed_schema()["properties"]["training"]
    for name, spec in cfg["grid"].get("extra_axes", {}).items():
        root, *keys = spec["sets"].split(".")
        if root != "training":
            continue
        for model in cfg["grid"]["axes"]["model"]:
            for i, value in enumerate(axis_values(cfg, name, model)):
                if value == spec["default"]:
                    continue
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
    for name, spec in cfg["grid"].get("extra_axes", {}).items():
        root, *keys = spec["sets"].split(".")
        if root != "model":
            continue
        for model in cfg["grid"]["axes"]["model"]:
            for i, value in enumerate(axis_values(cfg, name, model)):
                if value == spec["default"]:
                    continue
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


def train_pool_per_class(cfg: dict) -> int:
    data = cfg["data"]
    return data["generate"]["jets_per_class"] - data["val_per_class"] - data["test_per_class"]


def axis_values(cfg: dict, axis: str, model: str) -> list:
    """Values of ``axis`` for cells of ``model`` (per-model overrides win)."""
    override = cfg["grid"].get("per_model", {}).get(model, {})
    if axis in override:
        return list(override[axis])
    if axis in BUILTIN_AXES or axis in PRETRAIN_AXES:
        return list(cfg["grid"]["axes"].get(axis, {"pretrain": ["none"], "finetune": ["full"]}.get(axis, [])))
    return list(cfg["grid"]["extra_axes"][axis]["values"])


def extra_axis_settings(cfg: dict, cell: dict, root: str):
    """(keys, value) of each extra axis that sets ``<root>.<keys>`` and is not at its default for ``cell``.

    By declaration an axis's default is what runs without the axis: it leaves the settings untouched, so adding
    an axis never changes (and so never retrains) an existing cell.
    """
    for axis, spec in cfg["grid"].get("extra_axes", {}).items():
        value = cell.get(axis, spec["default"])
        head, *keys = spec["sets"].split(".")
        if value != spec["default"] and head == root:
            yield keys, value


def training_settings(cfg: dict, cell: dict) -> dict:
    """The ``training`` part of a cell's settings (see :func:`jetscale.settings.resolve_settings`): the section
    less its run knobs and the other kind of budget's keys, the cell's ``training.`` axes, its model's rate."""
    # compute 'auto' trains to convergence (training.stopping), a number is a fixed budget: each cell's
    # settings hold only the keys its kind of budget reads
    training = hashed_section("training", cfg["training"], "auto" if cell["compute"] == "auto" else "fixed")
    for keys, value in extra_axis_settings(cfg, cell, "training"):
        set_nested(training, keys, value)
    if isinstance(training.get("lr"), dict):  # per-model learning rates: the cell's model's (or its default)
        training["lr"] = training["lr"].get(cell["model"])
    if training.get("lr") is None:
        training["lr"] = catalog.get(cell["model"]).default_lr
    return training


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


def set_nested(target: dict, keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        target = target.setdefault(key, {})
    target[keys[-1]] = value
