"""Command-line flags generated from the settings dataclasses, so a setting is declared once.

Each flag comes from a dataclass field: ``--train-snapshots`` from ``train_snapshots``, its
type from the annotation, its help from the field's docstring (the string literal under the
field), its default from the field's default (or ``None`` where the CLI lets another source,
such as an agent's own training budget, fill it). Bad values are left to the dataclass's own
validation, which raises one ``ValueError`` naming the field; the CLIs print it as one line.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import re
import sys
import textwrap
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

_SCALARS: dict[str, type] = {"int": int, "float": float, "str": str, "Path": Path}
EXECUTION_FLAGS = ("noise_p", "shots", "mitigation", "grad")
"""the :class:`agents.models.quantum.Execution` fields that command lines set"""
SYSTEM_FLAGS = ("model", "link", "cluster", "lsfd", "tau_c", "pilot_overhead", "asd_deg")
"""the :class:`cfenv.config.SystemConfig` fields that command lines set: the system model and its options"""


@cache
def field_docs(cls: type) -> dict[str, str]:
    """A dataclass's attribute docstrings, ``{field: one-line text}``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef)).body
    docs = {}
    for prev, node in zip(body, body[1:]):
        if (isinstance(prev, ast.AnnAssign) and isinstance(prev.target, ast.Name) and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            docs[prev.target.id] = " ".join(node.value.value.split())
    return docs


OFF = "; off: "
"""an on-by-default switch's docstring may say what ``--no-<name>`` does after this marker"""
_ROLE = re.compile(r":(?:mod|class|func|meth|attr|data):`~?([^`]+)`")


def plain(text: str) -> str:
    """A docstring's reStructuredText as plain help text: ``code`` -> code, :role:`name` -> name."""
    return _ROLE.sub(r"\1", text).replace("``", "")


def _field(cls: type, name: str) -> dataclasses.Field:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if name not in fields:
        raise KeyError(f"{cls.__name__} has no field {name!r}")
    return fields[name]


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def flag_name(name: str) -> str:
    """``train_snapshots`` -> ``--train-snapshots``."""
    return "--" + name.replace("_", "-")


def add_fields(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type, names: tuple[str, ...], *,
               unset: bool = False, unset_help: str = "", aliases: dict[str, tuple[str, ...]] | None = None) -> None:
    """Add one flag per field of dataclass ``cls`` named in ``names``.

    Args:
        unset: defaults are ``None`` (the flag was not given) instead of the field's default, for
            settings that another source fills (an agent's budget); ``unset_help`` says which.
        aliases: extra flag spellings per field (``{"runs_dir": ("--out",)}``); the first spelling
            replaces the generated one.
    """
    docs = field_docs(cls)
    for name in names:
        f = _field(cls, name)
        annotation = str(f.type).replace(" ", "")
        base = annotation.removesuffix("|None")
        default = None if unset else _default(f)
        spellings = (aliases or {}).get(name) or (flag_name(name),)
        help_text = plain(docs.get(name, ""))
        kwargs: dict[str, Any] = {"dest": name}
        if base == "bool":
            if _default(f) is True:  # an on-by-default switch is turned off by --no-<name>
                spellings = (aliases or {}).get(name) or ("--no-" + name.replace("_", "-"),)
                kwargs.update(action="store_false", default=True if not unset else None)
                on, _, off = help_text.partition(OFF)
                help_text = off or f"do not {on}"
            else:
                kwargs.update(action="store_true", default=False if not unset else None)
        elif base.startswith("tuple[") and base.endswith(",...]"):
            kwargs.update(nargs="+", type=_SCALARS[base[6:-5]], default=None if default is None else list(default))
        elif base in _SCALARS:
            kwargs.update(type=_SCALARS[base], default=default)
        else:
            raise TypeError(f"{cls.__name__}.{name}: no flag for type {f.type}")
        shown = _default(f)
        if unset and unset_help:
            help_text += f" (default: {unset_help})"
        elif base != "bool" and shown not in (None, ()) and "(default" not in help_text and "default:" not in help_text:
            help_text += f" (default: {' '.join(map(str, shown)) if isinstance(shown, tuple) else shown})"
        parser.add_argument(*spellings, help=help_text.replace("%", "%%"), **kwargs)


def add_system_flags(parser: argparse.ArgumentParser) -> None:
    """The :data:`SYSTEM_FLAGS` as one group (``--model scalable --link uplink --asd-deg 15`` ...)."""
    from cfenv.config import SystemConfig

    group = parser.add_argument_group("the system model (docs/model.md §0; the scalable model: §8)")
    add_fields(group, SystemConfig, SYSTEM_FLAGS, unset=True, unset_help="the model's")


def given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The fields among ``names`` that the command line set (those not ``None``), tuples as tuples."""
    values = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}


def error(prog: str, message: str) -> int:
    """Print one error line on stderr; returns 2, argparse's exit status for a bad command line."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


def fail(prog: str, message: str) -> NoReturn:
    """:func:`error`, then exit."""
    raise SystemExit(error(prog, message))
