"""The pipeline config: YAML in, fully validated before any work starts, every mistake named by key path.

Validation imports neither TensorFlow nor Keras, so a rerun whose steps are all cached stays fast.
Paths written in a config file resolve against the file's folder; paths given on the command line
(``--set``, ``--data-dir``, ``--model``) resolve against the working directory.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeslim.errors import ConfigError, EdgeslimError, Problems
from edgeslim.export.options import config_defaults as export_option_defaults
from edgeslim.export.options import config_rules as export_option_rules
from edgeslim.fit.options import config_rules as fit_option_rules
from edgeslim.modelio import KERAS_SUFFIXES
from edgeslim.settings import Rule, is_type, shown
from edgeslim.train.config import MAX_SEED

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")
SECTIONS = ("dataset", "model", "train", "compress", "fit", "export", "report")
# Upper bounds: far above any edge model's needs, so only a typo or a hostile file meets them.
MAX_CLASS_INDEX = 65_535
MAX_IMAGE_SIDE = 4_096
# A schema maps key -> a type (or tuple of types) checked with isinstance, or a Rule (type and range).
DATASET_KEYS = {
    "name": str,
    "data_dir": (str, type(None)),
    "seed": Rule("int", 0, MAX_SEED),
    # reconstruction: train on the other classes, score AUC
    "anomaly_class": Rule("int", 0, MAX_CLASS_INDEX, optional=True),
    "image_size": (str, int, list, type(None)),  # folder: resize to this (default: the model's input)
    "color_mode": (str, type(None)),  # folder: grayscale or rgb (default: as the images are)
}
EXPORT_KEYS = {
    "targets": list,
    "formats": dict,  # target -> its formats (default: the target's)
    **export_option_rules(),  # board, calib_samples, agreement_floor, ...: ExportOptions' own rules
}
REPORT_KEYS = {"formats": list, "plots": bool}
FIT_KEYS = {
    "target": str,
    "board": (str, type(None)),
    "max_flash": (str, int),
    "max_arena": (str, int),
    "max_macs": int,
    "max_latency_ms": float,
    "max_instructions": int,
    "max_loss": float,
    **fit_option_rules(),  # techniques, max_trials, ..., with FitOptions' own rules
}
REPORT_FORMATS = ("json", "md", "html")


@dataclass
class StageSpec:
    name: str
    params: dict[str, Any]
    finetune: dict[str, Any] | None


@dataclass
class PipelineConfig:
    raw: dict[str, Any]  # the validated config as run (written to RUN/config.yaml)
    dataset: dict[str, Any]
    model: str
    unsafe_load: bool
    train: dict[str, Any] | None
    stages: list[StageSpec] = field(default_factory=list)
    export: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] | None = None  # the budget search, in place of a hand-written compress list
    report: dict[str, Any] = field(default_factory=dict)


def default_config_text() -> str:
    return DEFAULT_CONFIG.read_text()


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a YAML config (the embedded default when ``path`` is None), apply ``key.path=value`` overrides."""
    from edgeslim.pipeline.yaml_safe import read_yaml_file

    source = Path(path) if path is not None else DEFAULT_CONFIG
    if not source.is_file():
        raise EdgeslimError(f"{source}: no such config file", "write one with `edgeslim init CONFIG.yaml`")
    raw = read_yaml_file(source)  # bounded: size, aliases, duplicate keys (see yaml_safe)
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: the config must be a mapping of sections {list(SECTIONS)}, got {type(raw).__name__}",
            "start from `edgeslim init CONFIG.yaml`",
        )
    absolutize_paths(raw, source.resolve().parent if path is not None else Path.cwd())
    problems = Problems()
    for item in overrides or []:
        with problems.collect():
            apply_override(raw, item)
    problems.raise_if_any()
    absolutize_paths(raw, Path.cwd())  # what --set added is relative to the working directory
    return validate(raw)


def absolutize_paths(raw: dict[str, Any], base_dir: Path) -> None:
    """Make the config's relative paths absolute against ``base_dir`` (values of other types stay)."""
    dataset = raw.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("data_dir"), str):
        dataset["data_dir"] = str(_resolve(dataset["data_dir"], base_dir))
    model = raw.get("model")
    if isinstance(model, str) and model.endswith(KERAS_SUFFIXES):
        raw["model"] = str(_resolve(model, base_dir))
    elif (
        isinstance(model, dict)
        and isinstance(model.get("source"), str)
        and model["source"].endswith(KERAS_SUFFIXES)
    ):
        model["source"] = str(_resolve(model["source"], base_dir))
    export = raw.get("export")
    if (
        isinstance(export, dict)
        and isinstance(export.get("board"), str)
        and export["board"].endswith(".json")
    ):
        export["board"] = str(_resolve(export["board"], base_dir))


def _resolve(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base_dir / p)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """``train.epochs=3`` or ``compress[1].lowrank.energy=0.9``: the value is parsed as YAML."""
    import yaml

    from edgeslim.pipeline.yaml_safe import load_yaml

    if "=" not in item:
        raise ConfigError(f"--set {item}: expected KEY.PATH=VALUE", "e.g. --set train.epochs=3")
    key, text = item.split("=", 1)
    try:
        value = load_yaml(text, f"--set {key}")  # the same bounds as a config file
    except yaml.YAMLError:
        raise ConfigError(
            f"--set {key}: the value {shown(text)} is not valid YAML", "quote it, e.g. --set 'train.epochs=3'"
        ) from None
    parts = _split_key(key)
    node: Any = raw
    for part in parts[:-1]:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ConfigError(f"--set {key}: no list entry [{part}]", "count entries from 0")
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is not inside a section")
            if node.get(part) is None:  # absent, or an empty section (`train:` with nothing under it)
                node[part] = {}
            node = node[part]
    last = parts[-1]
    if isinstance(last, int) or not isinstance(node, dict):
        raise ConfigError(f"--set {key}: cannot set a whole list entry", "name a key inside it")
    node[last] = value


def _split_key(key: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in key.split("."):
        name, _, rest = piece.partition("[")
        if name:
            parts.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            if not index.isdigit():
                raise ConfigError(f"--set {key}: [{index}] is not a list index", "write e.g. compress[1]")
            parts.append(int(index))
            rest = rest.lstrip("[")
    if not parts or any(p == "" for p in parts):
        raise ConfigError(f"--set {key}: empty key", "write e.g. train.epochs=3")
    return parts


def validate(raw: dict[str, Any], base_dir: Path | None = None) -> PipelineConfig:
    """Check every section, collecting every mistake; paths must already be absolute (or ``base_dir``)."""
    raw = copy.deepcopy(raw)
    if base_dir is not None:
        absolutize_paths(raw, base_dir)
    problems = Problems()
    for key in raw:
        if key not in SECTIONS:
            problems.add(f"{key}: unknown section", f"sections are {list(SECTIONS)}")
    dataset: dict[str, Any] = {"name": "digits", "data_dir": None, "seed": 0}
    with problems.collect():
        dataset |= check_mapping(raw.get("dataset", {}), "dataset", DATASET_KEYS)
    with problems.collect():  # from the section itself, so it is checked even when another key is wrong
        given = raw.get("dataset")
        _check_image_size(given.get("image_size") if isinstance(given, dict) else None)
    _check_dataset_name(dataset, problems)
    model: str | None = None
    unsafe = False
    with problems.collect():
        model, unsafe = _check_model(raw.get("model", "digits_cnn"))
    train = None
    if model is not None:  # a bad model: its own error, not a second one about its training
        with problems.collect():
            train = _check_train(raw.get("train"), model)
    stages = _check_compress(raw.get("compress", []), problems)
    export = _check_export(raw.get("export", {}), problems)
    fit = _check_fit(raw.get("fit"), export, problems)
    if fit is not None and stages:
        problems.add("fit: and compress: are both set", "use one: fit searches the stages for you")
    report = {"formats": list(REPORT_FORMATS), "plots": True}
    with problems.collect():
        report |= check_mapping(raw.get("report", {}), "report", REPORT_KEYS)
        for i, fmt in enumerate(report["formats"]):
            if fmt not in REPORT_FORMATS:
                problems.add(f"report.formats[{i}]: must be one of {list(REPORT_FORMATS)}, got {shown(fmt)}")
    problems.raise_if_any()
    normalized = {
        "dataset": dataset,
        "model": model if not unsafe else {"source": model, "unsafe_load": True},
        "train": train,
        "compress": raw.get("compress", []),
        **({"fit": fit} if fit is not None else {}),
        "export": export,
        "report": report,
    }
    return PipelineConfig(normalized, dataset, model, unsafe, train, stages, export, report=report, fit=fit)


def check_mapping(value: Any, path: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Keys known, values of the declared type (a float key takes ints; NaN and inf are refused), a
    Rule's values in its range too."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: must be a mapping, got {type(value).__name__}")
    problems = Problems()
    for key, item in value.items():
        if key not in schema:
            problems.add(f"{path}.{key}: unknown key", f"known keys: {sorted(schema)}")
            continue
        expected = schema[key]
        if isinstance(expected, Rule):
            problem = expected.problem(item)
            if problem:
                problems.add(f"{path}.{key}: {problem}")
            continue
        if expected is float:
            ok = is_type(item, "float")  # a huge int is finite: no float() to overflow
        elif expected is int:
            ok = is_type(item, "int")
        else:
            ok = isinstance(item, expected) and not (isinstance(item, bool) and bool not in _types(expected))
        if not ok:
            names = (
                expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
            )
            names = {"float": "a finite number", "int": "an integer", "bool": "true or false"}.get(
                names, names
            )
            problems.add(f"{path}.{key}: must be {names}, got {shown(item)}")
    problems.raise_if_any()
    return dict(value)


def _types(expected: type | tuple[type, ...]) -> tuple[type, ...]:
    return expected if isinstance(expected, tuple) else (expected,)


def _check_image_size(value: Any) -> None:
    """``dataset.image_size``: ``28``, ``"28x32"`` or ``[28, 32]``, each side in [1, MAX_IMAGE_SIDE]."""
    from edgeslim.data.folder import parse_image_size

    if isinstance(value, bool) or not isinstance(value, str | int | list):
        return  # None, or a wrong type that DATASET_KEYS reports
    what = f"dataset.image_size: must be HxW like 28x28, a side like 28, or [H, W], got {shown(value)}"
    if isinstance(value, list) and not all(is_type(v, "int") for v in value):
        raise ConfigError(what)
    sides = value if isinstance(value, list) else [value] if isinstance(value, int) else None
    try:
        size = parse_image_size(value)
    except EdgeslimError:
        if sides is None or all(1 <= side <= MAX_IMAGE_SIDE for side in sides):
            raise ConfigError(what) from None
        size = None  # whole numbers out of range: say so below
    if size is None or not all(1 <= side <= MAX_IMAGE_SIDE for side in size):
        raise ConfigError(
            f"dataset.image_size: each side must be in [1, {MAX_IMAGE_SIDE}], got {shown(value)}"
        )


def _check_dataset_name(dataset: dict[str, Any], problems: Problems) -> None:
    from edgeslim.data import DATASETS

    name = dataset["name"]
    if isinstance(name, str) and name not in DATASETS and not name.endswith(".npz"):
        problems.add(
            f"dataset.name: unknown dataset {shown(name)}", f"choose one of {sorted(DATASETS)} or a .npz path"
        )


def _check_model(value: Any) -> tuple[str, bool]:
    from edgeslim.train.zoo_names import ZOO_NAMES

    unsafe = False
    if isinstance(value, dict):
        check_mapping(value, "model", {"source": str, "unsafe_load": bool})
        if "source" not in value:
            raise ConfigError("model.source: missing", "give a zoo name or a .keras (or .h5) path")
        value, unsafe = value["source"], bool(value.get("unsafe_load", False))
    if not isinstance(value, str):
        raise ConfigError(f"model: must be a zoo name or a .keras (or .h5) path, got {shown(value)}")
    if value in ZOO_NAMES:
        return value, unsafe
    if value.endswith(KERAS_SUFFIXES):
        if not Path(value).is_file():
            raise ConfigError(f"model: {value}: no such model file", "check the path")
        return value, unsafe
    raise ConfigError(
        f"model: unknown model {shown(value)}",
        f"choose one of {sorted(ZOO_NAMES)} or a .keras (or .h5) path",
    )


def _check_train(value: Any, model: str) -> dict[str, Any] | None:
    from edgeslim.train.config import TrainConfig
    from edgeslim.train.zoo_names import zoo_optimizer

    if value is None:
        if not model.endswith(KERAS_SUFFIXES):
            raise ConfigError(
                "train: missing", f"model {model!r} is built untrained from the zoo, so it needs training"
            )
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"train: must be a mapping, got {type(value).__name__}")
    value = {**zoo_optimizer(model, value.get("optimizer")), **value}  # the config's own keys win
    return TrainConfig.from_dict(value, prefix="train").to_dict()


def _check_compress(value: Any, problems: Problems) -> list[StageSpec]:
    from edgeslim.compress.registry import build_stage
    from edgeslim.train.config import FinetuneConfig

    if value is None:
        return []
    if not isinstance(value, list):
        problems.add("compress: must be a list of stages", "e.g. [{prune: {sparsity: 0.5}}]")
        return []
    specs = []
    for i, entry in enumerate(value):
        where = f"compress[{i}]"
        if isinstance(entry, str):
            entry = {entry: {}}
        if not isinstance(entry, dict) or len(entry) != 1:
            problems.add(
                f"{where}: must be one stage name with its parameters", "e.g. {lowrank: {energy: 0.9}}"
            )
            continue
        name, params = next(iter(entry.items()))
        if params is not None and not isinstance(params, dict):
            problems.add(
                f"{where}.{name}: its parameters must be a mapping, got {shown(params)}",
                f"e.g. {{{name}: {{...}}}}; see the stage's parameters in the README",
            )
            continue
        params = dict(params or {})
        finetune = params.pop("finetune", None)
        with problems.collect(f"{where}."):
            build_stage(name, **params)
        if finetune is not None:
            with problems.collect(f"{where}."):
                if not isinstance(finetune, dict):
                    raise ConfigError(
                        f"{name}.finetune: must be a mapping like {{epochs: 2}}, got {shown(finetune)}"
                    )
                FinetuneConfig.from_dict(finetune, prefix=f"{name}.finetune")
        specs.append(StageSpec(name=name, params=params, finetune=finetune))
    return specs


def _check_export(value: Any, problems: Problems) -> dict[str, Any]:
    from edgeslim.export.boards import load_board
    from edgeslim.export.registry import TARGET_NAMES

    export: dict[str, Any] = {"targets": ["cpu"], **export_option_defaults()}
    with problems.collect():
        check_mapping(value, "export", EXPORT_KEYS)
    if isinstance(value, dict):  # check what the keys hold even when another key is wrong
        export |= {k: v for k, v in value.items() if k in EXPORT_KEYS}
    for i, target in enumerate(export["targets"] if isinstance(export["targets"], list) else []):
        if target not in TARGET_NAMES:
            problems.add(f"export.targets[{i}]: must be one of {sorted(TARGET_NAMES)}, got {shown(target)}")
    if isinstance(export["board"], str) and export["board"]:
        try:
            load_board(export["board"])  # a shipped profile's name, or a board JSON file
        except EdgeslimError as exc:
            problems.add(f"export.board: {exc.message}", exc.hint)
    return export  # agreement_floor, calib_samples, ...: ranged by EXPORT_KEYS' (ExportOptions') rules


def _check_fit(value: Any, export: dict[str, Any], problems: Problems) -> dict[str, Any] | None:
    """The fit section: a budget (make_budget checks it) and the search's own settings."""
    from edgeslim.fit import Budget, FitOptions, check_techniques, make_budget

    if value is None:
        return None
    defaults = FitOptions().to_dict()
    fit: dict[str, Any] = {"target": Budget.target, "board": None, "max_loss": Budget.max_loss} | defaults
    with problems.collect():
        fit |= check_mapping(value, "fit", FIT_KEYS)
    budget_keys = ("max_flash", "max_arena", "max_macs", "max_latency_ms", "max_instructions", "board")
    if not any(fit.get(k) is not None for k in budget_keys):
        fit["board"] = export["board"]  # no budget given: the export's board is the budget
    with problems.collect():
        args = {k: fit.get(k) for k in budget_keys}
        make_budget(fit["target"], max_loss=fit["max_loss"], prefix="fit.", **args)
        check_techniques(fit["techniques"], fit["target"])
    return fit  # max_trials, finetune_epochs, workers, ...: ranged by FIT_KEYS' (FitOptions') rules
