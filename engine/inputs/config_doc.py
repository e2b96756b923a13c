"""The config as annotated TOML, written from the models of engine.inputs.config.

`defaults_toml()` is `opd-engine config --defaults` and, between markers, the README's config
reference (scripts/gen_config_doc.py writes it, tests/test_config.py checks it). Every key is
shown with its default and its doc line; a required key shows an example value, a key without a
default (revision) is commented out, and so is the optional [[contexts]] example.
`effective_toml(cfg)` writes a parsed config the same way (what `--set` runs record).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from engine.inputs.config import ARRAYS, SECTIONS, RunConfig, Table

COMMENT_COLUMN = 35
"""Where the `# doc` comments start."""
WIDTH = 100
BEGIN = ("<!-- BEGIN GENERATED from engine/inputs/config.py by scripts/gen_config_doc.py "
         "(opd-engine config --defaults) -->")
END = "<!-- END GENERATED config reference -->"
_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def defaults_toml() -> str:
    """Every key with its default and doc line; examples where a key is required."""
    return _document(None)


def effective_toml(cfg: RunConfig, header: str = "") -> str:
    """A parsed config with every value it runs with (paths relative to its folder again)."""
    return header + _document(cfg)


def readme_block() -> str:
    """The README's generated config reference: markers around a TOML code block."""
    return f"{BEGIN}\n\n```toml\n{defaults_toml()}```\n\n{END}"


def _document(cfg: RunConfig | None) -> str:
    lines: list[str] = []
    for name, field in RunConfig.model_fields.items():
        if name in SECTIONS:
            table = SECTIONS[name]
            values = _values(table, getattr(cfg, name) if cfg else None, cfg)
            lines += ["", *_header(f"[{name}]", table), *_keys(table, values, comments=True)]
        elif name in ARRAYS:
            table = ARRAYS[name]
            entries = getattr(cfg, name) if cfg else _examples(table)
            off = cfg is None and name == "contexts"  # optional: no context by default
            for i, entry in enumerate(entries):
                full = cfg is not None or i == 0
                values = (_values(table, entry, cfg) if isinstance(entry, BaseModel)
                          else _values(table, None, None, entry, only_given=not full))
                title = f"[[{name}]]"
                lines += ["", *(_header(title, table, off) if i == 0 else [title]),
                          *_keys(table, values, comments=full, off=off)]
        else:
            value = getattr(cfg, name) if cfg else field.default
            lines += _keys(RunConfig, {name: value}, comments=True)
    return "\n".join(lines).lstrip("\n") + "\n"


def _examples(table: type[Table]) -> list[dict[str, Any]]:
    extra = table.model_config.get("json_schema_extra")
    return list(extra.get("examples", [])) if isinstance(extra, dict) else []


def _values(table: type[Table], model: BaseModel | None, cfg: RunConfig | None,
            example: dict[str, Any] | None = None, *, only_given: bool = False
            ) -> dict[str, Any]:
    """Key -> value to show: the model's, else the example's, else the default or example."""
    out: dict[str, Any] = {}
    for name, field in table.model_fields.items():
        if model is not None:
            value = getattr(model, name)
            if cfg is not None and name in ("model", "path") and value and value != "student":
                value = cfg.portable(value)
        elif example is not None and name in example:
            value = example[name]
        elif only_given:
            continue
        else:
            value = _extra(field).get("example") if field.is_required() else field.default
        out[name] = value
    return out


def _header(title: str, table: type[Table], off: bool = False) -> list[str]:
    """`[name]  # the table's docstring`, as a comment line rather than a sentence."""
    doc = (table.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ").rstrip(".")
    first = doc.split(" ", 1)[0]
    if not first[1:2].isupper():  # "The model" -> "the model"; "[[contexts]]", "JSD" kept
        doc = doc[:1].lower() + doc[1:]
    return _line(f"# {title}" if off else title, doc)


def _keys(table: type[BaseModel], values: dict[str, Any], *, comments: bool,
          off: bool = False) -> list[str]:
    """One `key = value  # doc` line per key; `off` comments them all out."""
    out: list[str] = []
    for name, value in values.items():
        field = table.model_fields[name]
        doc = _doc(field) if comments else ""
        unset = value is None  # no TOML null: an unset option is shown commented out
        code = f"{_key(name)} = {_toml(_extra(field).get('example', '') if unset else value)}"
        out += _line(f"# {code}" if unset or off else code, doc)
    return out


def _doc(field: FieldInfo) -> str:
    """The comment of a key: required or not, its choices, its doc line."""
    parts = []
    if field.is_required():
        parts.append("required")
    if get_origin(field.annotation) is Literal:
        parts.append(" | ".join(map(str, get_args(field.annotation))))
    text = "; ".join(parts)
    doc = field.description or ""
    return f"{text}: {doc}" if text and doc else text or doc


def _extra(field: FieldInfo) -> dict[str, Any]:
    return field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}


def _line(code: str, comment: str) -> list[str]:
    """`code   # comment`, the comment wrapped at WIDTH under its first line."""
    if not comment:
        return [code]
    room = WIDTH - COMMENT_COLUMN - 2
    parts = textwrap.wrap(comment, room, break_on_hyphens=False) or [""]
    pad = " " * COMMENT_COLUMN
    if len(code) < COMMENT_COLUMN:
        first = [f"{code.ljust(COMMENT_COLUMN)}# {parts[0]}"]
        parts = parts[1:]
    else:
        first = [code]
    return first + [f"{pad}# {p}" for p in parts]


def _key(name: str) -> str:
    return name if _BARE.match(name) else json.dumps(name, ensure_ascii=False)


def _toml(value: Any) -> str:
    """A TOML literal (strings as basic strings, tuples as arrays, dicts as inline tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{_key(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML literal for {value!r}")
