"""The declared input spec of a model: which features enter, each one's transform and standardisation.

Config (``inputs.<model>``, validated here, torch-free) is a preset name or a mapping::

    inputs:
      particlenet: physics                     # a preset: physics | raw
      part:
        preset: physics                        # start from a preset (default: the model's default preset) ...
        features:                              # ... and override, add (derived) or drop (null) features
          d0_sig: {transform: signed_log, standardise: auto}
          z0_sig: null
          log_pt: {standardise: {centre: 1.0, scale: 1.5}}

Per feature: ``transform`` is one step or a list of steps (:mod:`jetscale.inputs.transforms`, default
``identity``); ``standardise`` is ``none``, ``auto`` (centre = median, scale = half the 16-84% interval of the
transformed values over real particles of the cell's training subset, as weaver-core's ``auto``) or fixed
``{centre: c, scale: s}``; the model sees (f(x) - centre) / scale. Feature names are the 19 Table-1 features
(:data:`jetscale.data.schema.FEATURE_NAMES`) and the derived ones in :data:`DERIVED`.

Presets: ``raw`` is the split's Table-1 features unchanged (what every model saw before specs existed, so it
adds nothing to the settings hash); ``physics`` is the default of ParticleNet and ParT: the CEPC JoI reference's
d0/z0 compression, log-errors, standardised kinematics and the impact-parameter significances. BBT-Neutron
defaults to ``raw``: its byte tokenizer of the raw values is the point of the paper.
"""

from __future__ import annotations

import copy
from typing import Any

from ..data.schema import FEATURE_NAMES
from ..errors import ConfigError
from .transforms import parse_step

# derived feature -> (its formula, the Table-1 features it reads); computed by jetscale.inputs.stats.derive
#   significance: value / uncertainty where the uncertainty is positive, else 0 (neutral particles)
#   charge_weight: q · z^0.5 with z = E / E_jet, the particle's term of the κ = 0.5 jet charge (the observable
#     that carries the quark's charge sign); a sum over particles, so a network reads the jet charge linearly
DERIVED: dict[str, tuple[str, tuple[str, ...]]] = {
    "d0_sig": ("significance", ("d0", "d0_err")),
    "z0_sig": ("significance", ("z0", "z0_err")),
    "charge_weight": ("charge_weight", ("charge", "log_e_rel")),
}
KNOWN_FEATURES: tuple[str, ...] = FEATURE_NAMES + tuple(DERIVED)

_IP_COMPRESSION = [{"tanh_power": {"scale": 0.2, "power": 0.25}}]  # mm; the CEPC JoI reference's transform
_LOG_ERROR = [{"log": {"floor": 1.0e-3}}]  # mm; neutral particles have σ = 0, tracks σ ≥ 5 µm


def _physics() -> dict[str, dict]:
    spec = {name: {} for name in FEATURE_NAMES}  # identity, unstandardised: Δη, Δφ, charge, PID flags
    for name in ("log_pt", "log_e", "log_pt_rel", "log_e_rel", "delta_r"):
        spec[name] = {"standardise": "auto"}
    for name in ("d0", "z0"):
        spec[name] = {"transform": _IP_COMPRESSION}
    for name in ("d0_err", "z0_err"):
        spec[name] = {"transform": _LOG_ERROR, "standardise": "auto"}
    for name in ("d0_sig", "z0_sig"):
        spec[name] = {"transform": ["signed_log"], "standardise": "auto"}
    spec["charge_weight"] = {}  # in [-1, 1] already, and its sign is the information: unstandardised
    return spec


PRESETS: dict[str, dict[str, dict]] = {"raw": {name: {} for name in FEATURE_NAMES}, "physics": _physics()}


def default_preset(model: str) -> str:
    """The model's own preset (its catalog spec's ``default_preset``: physics for ParticleNet and ParT; raw for
    BBT-Neutron and vq_gpt, whose tokenizer standardises itself and whose options name Table-1 features)."""
    from ..models.catalog import MODELS

    spec = MODELS.get(model)
    return spec.default_preset if spec is not None else "raw"


def parse_inputs(raw: Any, model: str, where: str = "inputs") -> list[dict]:
    """Config value of ``inputs.<model>`` (None = the model's default) → canonical feature list.

    Canonical form (JSON-able, enters the settings hash): ``[{"name", "transform": [steps],
    "standardise": "none" | "auto" | {"centre", "scale"}}, ...]`` in model-input order.
    """
    where = f"{where}.{model}"
    if raw is None:
        raw = default_preset(model)
    if isinstance(raw, str):
        raw = {"preset": raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a preset name {sorted(PRESETS)} or a mapping, got {raw!r}")
    unknown = sorted(set(raw) - {"preset", "features"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: ['features', 'preset']")
    preset = raw.get("preset", default_preset(model))
    if preset not in PRESETS:
        raise ConfigError(f"{where}.preset: unknown preset {preset!r}; presets: {sorted(PRESETS)}")
    entries = copy.deepcopy(PRESETS[preset])
    overrides = raw.get("features") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{where}.features: a mapping of feature name to spec, got {overrides!r}")
    for name, spec in overrides.items():
        if name not in KNOWN_FEATURES:
            raise ConfigError(f"{where}.features.{name}: unknown feature; known features: {list(KNOWN_FEATURES)}")
        if spec is None:
            entries.pop(name, None)
            continue
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}.features.{name}: a mapping with transform/standardise, got {spec!r}")
        bad = sorted(set(spec) - {"transform", "standardise"})
        if bad:
            raise ConfigError(f"{where}.features.{name}: unknown key(s) {bad}; allowed: ['standardise', 'transform']")
        entries[name] = {**entries.get(name, {}), **spec}
    if not entries:
        raise ConfigError(f"{where}: no input features left")
    return [_canonical(name, spec, f"{where}.features.{name}") for name, spec in entries.items()]


def _canonical(name: str, spec: dict, where: str) -> dict:
    steps = spec.get("transform", [])
    steps = [steps] if isinstance(steps, str | dict) else list(steps or [])
    transform = [parse_step(s, f"{where}.transform") for s in steps]
    transform = [s for s in transform if s["step"] != "identity"]
    return {"name": name, "transform": transform, "standardise": _standardise(spec.get("standardise", "none"), where)}


def _standardise(value: Any, where: str):
    if value in ("none", "auto"):
        return value
    if isinstance(value, dict) and set(value) == {"centre", "scale"}:
        centre, scale = value["centre"], value["scale"]
        ok = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (centre, scale))
        if ok and scale > 0:
            return {"centre": float(centre), "scale": float(scale)}
    raise ConfigError(
        f"{where}.standardise: 'none', 'auto' or {{centre: number, scale: positive number}}, got {value!r}"
    )


def is_raw(features: list[dict]) -> bool:
    """True for the split's own features unchanged (the behaviour before input specs existed)."""
    return [f["name"] for f in features] == list(FEATURE_NAMES) and all(
        not f["transform"] and f["standardise"] == "none" for f in features
    )


def needs_statistics(features: list[dict]) -> bool:
    return any(f["standardise"] == "auto" for f in features)


def check_inputs(cfg: dict, where: str = "config") -> None:
    """Config validation: every model's ``inputs`` entry parses (raises ConfigError naming the key)."""
    from ..models.catalog import names

    section = cfg.get("inputs") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: inputs: a mapping of model name to input spec, got {section!r}")
    for model, raw in section.items():
        if model not in names():
            raise ConfigError(f"{where}: inputs.{model}: unknown model; known models: {list(names())}")
        try:
            parse_inputs(raw, model)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def model_inputs(cfg: dict, model: str) -> list[dict]:
    """The canonical input spec of ``model`` in the (validated) config."""
    return parse_inputs((cfg.get("inputs") or {}).get(model), model)
