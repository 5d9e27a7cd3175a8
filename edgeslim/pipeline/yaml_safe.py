"""The one way edgeslim reads YAML from a user: bounded before anything is built.

A config is small and plain, so the loader refuses, with the source, the line and what to do:

- a file over ``MAX_BYTES`` (checked before it is read in full);
- aliases (``*name``) and merge keys (``<<``): an alias is refused where the parser meets it, before
  anything is expanded, so a "billion laughs" file of a few lines costs nothing (write values out);
- more than ``MAX_NODES`` values or nesting deeper than ``MAX_DEPTH`` (the composer recurses per level);
- a key given twice in one mapping (YAML would keep the last one silently);
- an integer literal longer than ``MAX_INT_DIGITS`` digits.

Only the safe tags are built (PyYAML's SafeLoader: no Python objects). Imports no TensorFlow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edgeslim.errors import ConfigError

MAX_BYTES = 1024 * 1024
MAX_NODES = 20_000
MAX_DEPTH = 32
MAX_INT_DIGITS = 30
MERGE_TAG = "tag:yaml.org,2002:merge"


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases, merge keys, duplicate keys and oversized documents."""

    def __init__(self, stream: str, source: str) -> None:
        super().__init__(stream)
        self.source = source
        self.nodes = 0
        self.depth = 0

    def refuse(self, mark: Any, message: str, hint: str) -> ConfigError:
        where = f"{self.source}: line {mark.line + 1}" if mark is not None else self.source
        return ConfigError(f"{where}: {message}", hint)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise self.refuse(
                event.start_mark,
                f"alias *{event.anchor} refused: a config may not use aliases",
                "write the value out where it is used",
            )
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise self.refuse(
                self.peek_event().start_mark,
                f"more than {MAX_NODES:,} values: too big for a config",
                "a pipeline config holds a few dozen values; check the file is the one you meant",
            )
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise self.refuse(
                    self.peek_event().start_mark,
                    f"nested deeper than {MAX_DEPTH} levels: too deep for a config",
                    "check the file is the one you meant",
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep=deep)
        mapping: dict[Any, Any] = {}
        lines: dict[Any, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:
                raise self.refuse(
                    key_node.start_mark,
                    "merge key << refused: a config may not use merge keys",
                    "write the keys out",
                )
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in mapping
            except TypeError:  # a list or mapping as a key
                raise self.refuse(
                    key_node.start_mark, f"a key must be a plain value, got {key_node.id}", "use a name"
                ) from None
            line = key_node.start_mark.line + 1
            if duplicate:
                raise self.refuse(
                    key_node.start_mark,
                    f"duplicate key {key!r} (first on line {lines[key]})",
                    "keep one of them: YAML would silently use the last",
                )
            lines[key] = line
            mapping[key] = self.construct_object(value_node, deep=deep)
        return mapping

    def construct_yaml_int(self, node: Any) -> int:
        digits = sum(c.isdigit() for c in str(node.value))
        if digits > MAX_INT_DIGITS:
            raise self.refuse(
                node.start_mark,
                f"an integer of {digits} digits: too long",
                "give a number in the key's range",
            )
        return super().construct_yaml_int(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def load_yaml(text: str, source: str) -> Any:
    """Parse one YAML document from ``text``; ``source`` names it in messages (a file, ``--set KEY``).

    Raises ConfigError for a bound above and ``yaml.YAMLError`` for bad syntax (the caller words that).
    """
    if len(text) > MAX_BYTES:
        raise ConfigError(
            f"{source}: {len(text):,} characters, more than a config's {MAX_BYTES:,}",
            "check it is the text you meant",
        )
    loader = _BoundedLoader(text, source)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml_file(path: Path) -> Any:
    """The YAML document in ``path``: size checked before reading, UTF-8, bounded as ``load_yaml``.

    Syntax errors and non-text files raise ConfigError naming the file.
    """
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ConfigError(
            f"{path}: {size:,} bytes, more than a config's {MAX_BYTES:,}",
            "give a pipeline config (`edgeslim init CONFIG.yaml` writes one)",
        )
    with path.open("rb") as handle:
        data = handle.read(MAX_BYTES + 1)  # the file may have grown since stat
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path}: more than a config's {MAX_BYTES:,} bytes", "give a pipeline config")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (UTF-8)", "give a YAML config") from None
    try:
        return load_yaml(text, str(path))
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{path}: not valid YAML ({' '.join(str(exc).split())[:200]})", "fix the file's syntax"
        ) from None
