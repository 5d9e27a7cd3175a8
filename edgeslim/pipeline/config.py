"""The pipeline config: YAML in, fully validated before any work starts, errors that name the key path."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeslim.errors import ConfigError, EdgeslimError

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")
SECTIONS = ("dataset", "model", "train", "compress", "export", "report")
DATASET_KEYS = {"name": str, "data_dir": (str, type(None)), "seed": int}
EXPORT_KEYS = {"targets": list, "board": str, "agreement_floor": float, "calib_samples": int, "formats": dict}
REPORT_KEYS = {"formats": list, "plots": bool}
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
    report: dict[str, Any] = field(default_factory=dict)


def default_config_text() -> str:
    return DEFAULT_CONFIG.read_text()


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a YAML config (the embedded default when ``path`` is None), apply ``key.path=value`` overrides."""
    import yaml

    source = Path(path) if path is not None else DEFAULT_CONFIG
    if not source.is_file():
        raise EdgeslimError(f"{source}: no such config file", "write one with `edgeslim init CONFIG.yaml`")
    try:
        raw = yaml.safe_load(source.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the config must be a mapping of sections {list(SECTIONS)}")
    for item in overrides or []:
        apply_override(raw, item)
    return validate(raw, base_dir=source.parent if path is not None else Path.cwd())


def apply_override(raw: dict[str, Any], item: str) -> None:
    """``train.epochs=3`` or ``compress[1].lowrank.energy=0.9``: the value is parsed as YAML."""
    import yaml

    if "=" not in item:
        raise ConfigError(f"--set {item}: expected KEY.PATH=VALUE, e.g. train.epochs=3")
    key, text = item.split("=", 1)
    value = yaml.safe_load(text)
    parts = _split_key(key)
    node: Any = raw
    for part in parts[:-1]:
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ConfigError(f"--set {key}: no list entry [{part}]")
            node = node[part]
        else:
            node = node.setdefault(part, {}) if isinstance(node, dict) else None
            if node is None:
                raise ConfigError(f"--set {key}: {part} is not a section")
    last = parts[-1]
    if isinstance(last, int):
        raise ConfigError(f"--set {key}: cannot replace a whole list entry")
    node[last] = value


def _split_key(key: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in key.split("."):
        name, _, rest = piece.partition("[")
        if name:
            parts.append(name)
        while rest:
            index, _, rest = rest.partition("]")
            parts.append(int(index))
            rest = rest.lstrip("[")
    return parts


def validate(raw: dict[str, Any], base_dir: Path) -> PipelineConfig:
    raw = copy.deepcopy(raw)
    for key in raw:
        if key not in SECTIONS:
            raise ConfigError(f"{key}: unknown section", f"sections are {list(SECTIONS)}")
    dataset = _check_mapping(raw.get("dataset", {}), "dataset", DATASET_KEYS)
    dataset = {"name": "digits", "data_dir": None, "seed": 0, **dataset}
    if dataset["data_dir"] is not None:
        dataset["data_dir"] = str(_resolve(dataset["data_dir"], base_dir))
    model, unsafe = _check_model(raw.get("model", "digits_cnn"), base_dir)
    train = _check_train(raw.get("train"), model)
    stages = _check_compress(raw.get("compress", []))
    export = _check_export(raw.get("export", {}))
    report = _check_mapping(raw.get("report", {}), "report", REPORT_KEYS)
    report = {"formats": list(REPORT_FORMATS), "plots": True, **report}
    for i, fmt in enumerate(report["formats"]):
        if fmt not in REPORT_FORMATS:
            raise ConfigError(f"report.formats[{i}]: must be one of {list(REPORT_FORMATS)}, got {fmt!r}")
    normalized = {
        "dataset": dataset,
        "model": model if not unsafe else {"source": model, "unsafe_load": True},
        "train": train,
        "compress": raw.get("compress", []),
        "export": export,
        "report": report,
    }
    return PipelineConfig(
        raw=normalized,
        dataset=dataset,
        model=model,
        unsafe_load=unsafe,
        train=train,
        stages=stages,
        export=export,
        report=report,
    )


def _check_mapping(value: Any, path: str, schema: dict[str, Any]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: must be a mapping, got {type(value).__name__}")
    for key, item in value.items():
        if key not in schema:
            raise ConfigError(f"{path}.{key}: unknown key", f"known keys: {sorted(schema)}")
        expected = schema[key]
        if expected is float and isinstance(item, int) and not isinstance(item, bool):
            continue
        if expected is int and isinstance(item, bool):
            raise ConfigError(f"{path}.{key}: must be an integer, got {item!r}")
        if not isinstance(item, expected):
            names = (
                expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
            )
            raise ConfigError(f"{path}.{key}: must be {names}, got {item!r}")
    return dict(value)


def _resolve(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (base_dir / p)


def _check_model(value: Any, base_dir: Path) -> tuple[str, bool]:
    from edgeslim.train.zoo import MODELS as ZOO_NAMES

    unsafe = False
    if isinstance(value, dict):
        _check_mapping(value, "model", {"source": str, "unsafe_load": bool})
        if "source" not in value:
            raise ConfigError("model.source: missing", "give a zoo name or a .keras path")
        value, unsafe = value["source"], bool(value.get("unsafe_load", False))
    if not isinstance(value, str):
        raise ConfigError(f"model: must be a zoo name or a .keras path, got {value!r}")
    if value in ZOO_NAMES:
        return value, unsafe
    if value.endswith(".keras"):
        path = _resolve(value, base_dir)
        if not path.is_file():
            raise ConfigError(f"model: {path}: no such .keras file")
        return str(path), unsafe
    raise ConfigError(
        f"model: unknown model {value!r}", f"choose one of {sorted(ZOO_NAMES)} or a .keras path"
    )


def _check_train(value: Any, model: str) -> dict[str, Any] | None:
    from edgeslim.train.config import TrainConfig

    if value is None:
        if not model.endswith(".keras"):
            raise ConfigError(
                "train: missing", f"model {model!r} is built untrained from the zoo, so it needs training"
            )
        return None
    if not isinstance(value, dict):
        raise ConfigError(f"train: must be a mapping, got {type(value).__name__}")
    return TrainConfig.from_dict(value, prefix="train").to_dict()


def _check_compress(value: Any) -> list[StageSpec]:
    from edgeslim.compress import build_stage
    from edgeslim.train.finetune import FinetuneConfig

    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError("compress: must be a list of stages, e.g. [{prune: {amount: 0.5}}]")
    specs = []
    for i, entry in enumerate(value):
        where = f"compress[{i}]"
        if isinstance(entry, str):
            entry = {entry: {}}
        if not isinstance(entry, dict) or len(entry) != 1:
            raise ConfigError(
                f"{where}: must be one stage name with its parameters, e.g. {{lowrank: {{energy: 0.9}}}}"
            )
        name, params = next(iter(entry.items()))
        params = dict(params or {})
        if not isinstance(params, dict):
            raise ConfigError(f"{where}.{name}: parameters must be a mapping")
        finetune = params.pop("finetune", None)
        try:
            build_stage(name, **params)
            if finetune is not None:
                if not isinstance(finetune, dict):
                    raise ConfigError(
                        f"{name}.finetune: must be a mapping like {{epochs: 2}}, got {finetune!r}"
                    )
                FinetuneConfig.from_dict(finetune, prefix=f"{name}.finetune")
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc.message}", exc.hint) from None
        specs.append(StageSpec(name=name, params=params, finetune=finetune))
    return specs


def _check_export(value: Any) -> dict[str, Any]:
    from edgeslim.export import TARGETS
    from edgeslim.export.boards import load_board

    export = _check_mapping(value, "export", EXPORT_KEYS)
    export = {
        "targets": ["cpu"],
        "board": "cortex-m4",
        "agreement_floor": 0.98,
        "calib_samples": 200,
        **export,
    }
    for i, target in enumerate(export["targets"]):
        if target not in TARGETS:
            raise ConfigError(f"export.targets[{i}]: must be one of {sorted(TARGETS)}, got {target!r}")
    try:
        load_board(export["board"])  # a shipped profile's name, or a board JSON file
    except EdgeslimError as exc:
        raise ConfigError(f"export.board: {exc.message}", exc.hint) from None
    if not 0 <= export["agreement_floor"] <= 1:
        raise ConfigError(f"export.agreement_floor: must be in [0, 1], got {export['agreement_floor']!r}")
    if export["calib_samples"] <= 0:
        raise ConfigError(
            f"export.calib_samples: must be a positive integer, got {export['calib_samples']!r}"
        )
    return export
