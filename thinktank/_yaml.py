"""YAML with the line of every key, so a config error can say `file:line` (architectures, backends files).

data, lines = yaml_with_lines(text, "pools.yaml")
raise ConfigError(f"{locate('pools.yaml', lines, 'models', 'qwen', 'slots')}: slots must be >= 1")
"""

from __future__ import annotations

from typing import Any

import yaml

from thinktank.exceptions import ConfigError

#: the 1-based line of every mapping key / sequence item, by its path from the root
Lines = dict[tuple[Any, ...], int]


def yaml_with_lines(text: str, source: str) -> tuple[Any, Lines]:
    """Parse YAML and remember the line of every mapping key / sequence item, by path; malformed YAML is a
    `ConfigError` naming `source` and the line."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: malformed YAML: {exc}") from exc
    lines: Lines = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines[(*path, key.value)] = key.start_mark.line + 1
                walk(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return yaml.safe_load(text), lines


def locate(source: str, lines: Lines, *path: Any) -> str:
    """`source:line` of the deepest known prefix of `path` (the key itself when it is there), else `source`."""
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            return f"{source}:{lines[path[:cut]]}"
    return source
