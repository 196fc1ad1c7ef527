"""Models from the user's own files: ``models.<name>: {source: my_tagger.py, ...}`` in a study config.

The config declares everything planning needs, so a study is planned without importing the file (no torch)::

    models:
      my_tagger:
        source: taggers/my_tagger.py   # relative to the config file that names it; recorded absolute
        builder: build                 # the function in that file (default: build)
        input_kind: particles          # particles | bytes: the arrays its forward takes (catalog.INPUT_KINDS)
        preset: physics                # its input preset when inputs.my_tagger is not set (default: raw)
        default_lr: 1.0e-3             # when training.lr is null
        reference_width: 32            # the width of its reference configuration
        min_width: 8                   # width rule: at least min_width and a multiple of width_multiple
        width_multiple: 8
        blocks: blocks                 # optional: the attribute holding its blocks (depth in `jetscale models`)
        options: {k: 8}                # keyword arguments of the builder (an extra axis sets model.options.k)
        tokenizer: {...}               # input_kind bytes: the byte tokenization (jetscale.tokenize.options)

The builder is ``build(width, n_classes, n_features, **options) -> torch.nn.Module``; the module's forward takes
the input kind's arrays as keyword tensors (particles: ``x (B, F, P)``, ``points (B, 2, P)``, ``mask (B, 1, P)``,
``vectors (B, 4, P)``; bytes: ``patches (B, N, S)``, ``patch_mask (B, N)``) and returns ``(B, n_classes)`` logits.

Importing a model file runs it, with the rights of whoever runs the study: only the jobs that build the model
import it (training, export, ``jetscale models``), and a file under a results directory is never imported. The
file's sha256 enters the settings hash of the model's cells (an edit retrains them and nothing else; moving the
file does not); the job checks that the file it runs is the one it hashed. Only that file is hashed: code it
imports from elsewhere is not.
"""

from __future__ import annotations

import functools
import hashlib
import sys
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, JetscaleError
from ..options import OptionError, parse
from ..paths import STUDY_STAMP
from ..tokenize.options import TokenizerOptions
from . import catalog

ADAPTER = "jetscale.models.external:build"
REQUIRED = ("source", "default_lr", "reference_width")


@dataclass(frozen=True)
class ExternalOptions:
    """Config ``models.<name>`` of a model from the user's file (see the module docstring)."""

    source: str = ""  # source, default_lr and reference_width are required in a config (REQUIRED)
    default_lr: float = 1e-3
    reference_width: int = 64
    builder: str = "build"
    input_kind: str = "particles"
    preset: str = "raw"
    min_width: int = 8
    width_multiple: int = 1
    blocks: str | None = None
    options: dict = field(default_factory=dict)
    tokenizer: TokenizerOptions = field(default_factory=TokenizerOptions)

    def __post_init__(self):
        from ..inputs.spec import PRESETS

        if not self.builder.isidentifier():
            raise ValueError(f"builder: {self.builder!r} is not a function name")
        if self.input_kind not in catalog.INPUT_KINDS:
            raise ValueError(f"input_kind: {self.input_kind!r} is not one of {list(catalog.INPUT_KINDS)}")
        if self.preset not in PRESETS:
            raise ValueError(f"preset: {self.preset!r} is not one of {sorted(PRESETS)}")
        if self.default_lr <= 0:
            raise ValueError(f"default_lr: {self.default_lr} must be positive")
        for key in ("reference_width", "min_width", "width_multiple"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key}: {getattr(self, key)} must be at least 1")
        if problem := width_rule(self.min_width, self.width_multiple, self.reference_width):
            raise ValueError(f"reference_width: {problem}")


def width_rule(min_width: int, multiple: int, width: int) -> str | None:
    if width < min_width:
        return f"width {width} is below the minimum of {min_width}"
    if width % multiple:
        return f"width {width} must be a multiple of {multiple}"
    return None


def is_external(entry: Any) -> bool:
    """A ``models.<name>`` entry that declares a model from a file (built-in models' entries have no source)."""
    return isinstance(entry, dict) and "source" in entry


def register_config_models(cfg: dict, where: str, config_files: list[Path] = ()) -> None:
    """Register the config's models from user files (and only those: see :func:`catalog.use_external`).

    A relative ``source`` resolves against the directory of the config file that names it (the last of
    ``config_files``, lowest precedence first, whose ``models.<name>.source`` is that text; none: the working
    directory) and is written back absolute into ``cfg``, so the merged config every job reads names the file
    the study was planned with. Raises ConfigError naming the key."""
    specs = []
    for name, entry in (cfg.get("models") or {}).items():
        if not is_external(entry):
            continue
        key = f"models.{name}"
        spec = catalog.MODELS.get(name)
        if spec is not None and spec.source is None:
            raise ConfigError(f"{where}: {key}.source: {name!r} is a built-in model; give your model another name")
        missing = [k for k in REQUIRED if k not in entry]
        if missing:
            raise ConfigError(f"{where}: {key}: a model from a file needs {', '.join(missing)} (see the README)")
        if not isinstance(entry["source"], str) or not entry["source"]:
            raise ConfigError(f"{where}: {key}.source: a file path, got {entry['source']!r}")
        entry["source"] = str(resolve_source(entry["source"], name, config_files))
        try:
            options = parse(ExternalOptions, entry, key)
        except OptionError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        path = Path(options.source)
        if problem := source_problem(path, cfg):
            raise ConfigError(f"{where}: {key}.source: {problem}")
        specs.append(
            catalog.ModelSpec(
                name,
                builder=ADAPTER,
                options=ExternalOptions,
                default_lr=options.default_lr,
                reference_width=options.reference_width,
                input_kind=options.input_kind,
                width_rule=functools.partial(width_rule, options.min_width, options.width_multiple),
                blocks=options.blocks or "",
                default_preset=options.preset,
                source=catalog.ExternalSource(str(path), file_sha256(path)),
                summary=f"from {path}",
            )
        )
    catalog.use_external(specs)


def resolve_source(text: str, name: str, config_files) -> Path:
    path = Path(text).expanduser()
    if path.is_absolute():
        return path
    import yaml

    base = Path.cwd()
    for config in config_files:  # lowest precedence first: the last one naming this text wins
        try:
            raw = yaml.safe_load(Path(config).read_text())
        except (OSError, yaml.YAMLError):
            continue
        entry = ((raw or {}).get("models") or {}).get(name) if isinstance(raw, dict) else None
        if isinstance(entry, dict) and entry.get("source") == text:
            base = Path(config).resolve().parent
    return (base / path).resolve()


def source_problem(path: Path, cfg: dict | None = None) -> str | None:
    """Why ``path`` may not be imported as a model file (None when it may)."""
    if not path.is_file():
        return f"{path}: no such file"
    if path.suffix != ".py":
        return f"{path}: a model file is a Python file ending in .py"
    results = [Path(cfg.get("results", "results")).resolve()] if cfg is not None else []
    for parent in path.resolve().parents:
        if parent in results or (parent / STUDY_STAMP).is_file():
            return f"{path} lies under the results directory {parent}; model files there are never imported"
    return None


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------- jobs that build the model
def load(name: str, source: catalog.ExternalSource) -> types.ModuleType:
    """Import the model file (this runs it), refusing a file that changed since the config was loaded."""
    path = Path(source.path)
    if problem := source_problem(path):
        raise JetscaleError(f"models.{name}.source: {problem}")
    code = path.read_bytes()
    if hashlib.sha256(code).hexdigest() != source.sha256:
        raise JetscaleError(
            f"models.{name}.source: {path} changed since the study was planned; run the study (or the command) "
            "again to train with the new file"
        )
    module_name = f"jetscale_user_model_{name}_{source.sha256[:12]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    module = types.ModuleType(module_name)
    module.__file__ = str(path)
    sys.modules[module_name] = module  # dataclasses and pickling look their module up here
    try:
        exec(compile(code, str(path), "exec"), module.__dict__)
    except Exception as exc:
        del sys.modules[module_name]
        raise JetscaleError(f"models.{name}.source: importing {path} failed{_where(exc, path)}") from None
    return module


def build(spec: catalog.ModelSpec, width: int, n_classes: int, n_features: int, options: ExternalOptions):
    """The catalog builder of every model from a user file: import it, call its builder, check what it returns."""
    from torch import nn

    module = load(spec.name, spec.source)
    builder = getattr(module, options.builder, None)
    if not callable(builder):
        raise JetscaleError(f"models.{spec.name}.builder: {spec.source.path} has no function {options.builder!r}")
    try:
        model = builder(width=width, n_classes=n_classes, n_features=n_features, **options.options)
    except Exception as exc:
        raise JetscaleError(
            f"models.{spec.name}: {options.builder}(width={width}, n_classes={n_classes}, n_features={n_features}"
            f"{''.join(f', {k}={v!r}' for k, v in options.options.items())}) failed{_where(exc, spec.source.path)}"
        ) from None
    if not isinstance(model, nn.Module):
        raise JetscaleError(
            f"models.{spec.name}.builder: {options.builder} returned {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def _where(exc: BaseException, path: str | Path) -> str:
    """``" at FILE:LINE: Type: message"``: the deepest line of the user's file in the exception's traceback."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == Path(path)]
    if isinstance(exc, SyntaxError) and exc.lineno:
        frames = [types.SimpleNamespace(filename=str(path), lineno=exc.lineno)]
    line = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{line}: {type(exc).__name__}: {exc}"
