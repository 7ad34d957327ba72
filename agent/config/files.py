"""Reading config files and directories into entries, each checked on its own.

A `--config-dir` gives its *.yaml and *.yml files sorted by name. A file
must hold a mapping of string keys; YAML that repeats a key is refused
(PyYAML would keep the last one silently). A file that cannot be read or
parsed becomes one problem naming it, and the other files still load.

PyYAML leaves an escaped UTF-16 pair (`"\\ud83d\\ude00"`, one character
in JSON) as two surrogates: the pair is joined here. A surrogate left on its
own is refused, naming the key: UTF-8 cannot encode it, so a registration
holding one would make the node's record unsignable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from gossamer.agent.config.entries import Entry, check_entries
from gossamer.agent.config.errors import ConfigProblem, describe
from gossamer.catalog.plain_json import lone_surrogate_in


def read_config_paths(
    paths: Sequence[tuple[str, str]], problems: list[ConfigProblem]
) -> tuple[list[Entry], list[str]]:
    """Checked entries of every readable file in order, and the list of files read."""
    entries: list[Entry] = []
    sources: list[str] = []
    for kind, path in paths:
        for file in [path] if kind == "file" else _dir_files(path, problems):
            data = _read_yaml(file, problems)
            if data is not None:
                sources.append(file)
                entries += check_entries(_file_entries(file, data, problems), problems)
    return entries, sources


def _dir_files(path: str, problems: list[ConfigProblem]) -> list[str]:
    try:
        found = [p for p in Path(path).iterdir() if p.suffix in (".yaml", ".yml")]
    except OSError as exc:  # missing, not a directory, no permission
        problems.append(ConfigProblem(path, "", f"cannot read config directory: {exc.strerror}"))
        return []
    return [str(p) for p in sorted(found, key=lambda p: p.name) if not p.is_dir()]


def _read_yaml(path: str, problems: list[ConfigProblem]) -> dict[Any, Any] | None:
    """The file's top-level mapping ({} when empty), or None after noting why not."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except OSError as exc:  # missing, a directory, no permission
        message = f"cannot read config file: {exc.strerror}"
    except UnicodeDecodeError:
        message = "is not UTF-8 text"
    except yaml.MarkedYAMLError as exc:
        message = _yaml_message(exc)
    except (yaml.YAMLError, RecursionError) as exc:
        message = f"invalid YAML: {exc if isinstance(exc, yaml.YAMLError) else 'nested too deeply'}"
    else:
        if data is None or isinstance(data, dict):
            return data or {}
        message = f"top level must be a mapping of keys to values, got {describe(data)}"
    problems.append(ConfigProblem(path, "", message))
    return None


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    what = ", ".join(filter(None, (exc.context, exc.problem)))
    return f"invalid YAML{where}: {what}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice: PyYAML would keep the last silently."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f'duplicate key "{key}"', key_node.start_mark
                )
            if isinstance(key, str):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_joined_str(self, node: yaml.ScalarNode) -> str:
        """A string with each escaped UTF-16 pair made the one character it stands for."""
        value = self.construct_scalar(node)
        assert isinstance(value, str)
        if not _SURROGATE.search(value):
            return value
        return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


_SURROGATE = re.compile("[\ud800-\udfff]")
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:str", _UniqueKeyLoader.construct_joined_str)


def _file_entries(path: str, data: dict[Any, Any], problems: list[ConfigProblem]) -> list[Entry]:
    entries: list[Entry] = []
    for key, value in data.items():
        if isinstance(key, str) and (lone := _lone_surrogate(key, value)):
            shown = key.encode("ascii", "backslashreplace").decode()
            problems.append(ConfigProblem(path, shown, lone))
        elif isinstance(key, str):
            entries.append((key, value, path))
        else:
            problems.append(ConfigProblem(path, describe(key), "keys must be strings"))
    return entries


def _lone_surrogate(key: str, value: object) -> str | None:
    try:
        found = lone_surrogate_in({key: value}, "")
    except RecursionError:  # a YAML alias nesting a value in itself: later checks refuse it
        return None
    return f"{found[1:]}: a lone surrogate escape is not Unicode" if found else None
