"""A scenario file's values checked as they are read (bench/run/scenario.py): each helper
returns the value in the form the scenario wants, or raises ``ScenarioError`` saying where
and why."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@-]*$")


class ScenarioError(ValueError):
    """A scenario file that cannot be run, with a message saying where and why."""


def reject_unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(unknown)}; "
                            f"known: {', '.join(sorted(known))}")


def check_type(value: Any, kind: type | tuple[type, ...], where: str) -> None:
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise ScenarioError(f"{where}: {value!r} is not a {_kind_name(kind)}")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def as_list(value: Any, kind: type | tuple[type, ...], where: str) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    for item in values:
        check_type(item, kind, where)
    return values


def str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise ScenarioError(f"{where}: must be a list of names")
    return [checked_name(item, where) for item in value]


def checked_name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ScenarioError(f"{where}: {value!r} is not a name (letters, digits, . _ + @ -)")
    return value


def checked_choice(value: Any, choices: Sequence[str], where: str) -> str:
    if value not in choices:
        raise ScenarioError(f"{where}: {value!r} is not one of {', '.join(choices)}")
    return str(value)


def positive(value: Any, where: str) -> float:
    check_type(value, (int, float), where)
    if value <= 0:
        raise ScenarioError(f"{where}: must be positive, not {value}")
    return float(value)


def non_negative(value: Any, where: str) -> float:
    check_type(value, (int, float), where)
    if value < 0:
        raise ScenarioError(f"{where}: must not be negative, not {value}")
    return value


def positive_int(value: Any, where: str) -> int:
    check_type(value, int, where)
    if value < 1:
        raise ScenarioError(f"{where}: must be at least 1, not {value}")
    return int(value)


def interpreter_list(value: Any, where: str) -> Iterator[Any]:
    """Interpreter entries: a name/path string, or {path = "...", name = "tag", env = {...}}
    (env: variables set for the server, e.g. PYTHON_GIL = "1" on a free-threaded build)."""
    if not isinstance(value, list):
        raise ScenarioError(f"{where}: interpreters must be a list")
    for item in value:
        if isinstance(item, str) and item:
            yield item
        elif isinstance(item, dict) and isinstance(item.get("path"), str):
            reject_unknown(item, {"path", "name", "env"}, f"{where}: interpreters")
            if "name" in item:
                checked_name(item["name"], f"{where}: interpreters name")
            env = item.get("env", {})
            if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in env.items()):
                raise ScenarioError(f"{where}: interpreters env must be a table of "
                                    "NAME = \"value\" strings")
            yield dict(item)
        else:
            raise ScenarioError(f"{where}: interpreter {item!r} is not a path or "
                                "{path = ..., name = ..., env = {...}}")


def skip_servers_table(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    """A table of model = "why this group leaves it out" (the reason is shown in the run)."""
    if not isinstance(value, dict) or not all(isinstance(why, str) and why.strip()
                                              for why in value.values()):
        raise ScenarioError(f"{where}: must be a table of model = \"reason\"")
    return tuple((checked_name(model, where), why.strip()) for model, why in value.items())


def strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ScenarioError(f"{where}: must be a list of strings")
    return value


def model_args_table(value: Any, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: model_args must be a table of model = [args]")
    result = {}
    for model, args in value.items():
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ScenarioError(f"{where}: model_args.{model} must be a list of strings")
        result[checked_name(model, f"{where}: model_args")] = tuple(args)
    return result


def variants_table(value: Any, where: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: variants must be a table of name = {{model, args}}")
    result = {}
    for label, table in value.items():
        here = f"{where}: variants.{label}"
        if not isinstance(table, dict) or not isinstance(table.get("model"), str):
            raise ScenarioError(f"{here}: needs model = \"<registry model>\"")
        reject_unknown(table, {"model", "args"}, here)
        args = table.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ScenarioError(f"{here}: args must be a list of strings")
        result[checked_name(label, here)] = (checked_name(table["model"], here), tuple(args))
    return result
