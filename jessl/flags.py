"""Command-line options from dataclasses: one option a field, with the field's type, default and
comment, so that a default is written once, beside its unit and source.

`jessl train` names its options `--section.field` and leaves them as text for
`RunConfig.apply_overrides` (`typed=False`); `jessl eval` and `jessl submit` name them
`--field-name` and let argparse type them with the config's own converter (`typed=True`), a
bool as a switch: `--augment` for a field that is off by default, `--no-cache` for one that is on.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import re
import textwrap
import tokenize
import typing
from dataclasses import MISSING, fields

from jessl.config import ConfigError, convert_value


def add_flags(group, cls, *, names=None, flag=None, dest=None, typed: bool = True) -> None:
    """One argparse option on `group` for each field of dataclass `cls` (or those in `names`).

    flag(name) -> the option string (default `--field-name`); dest(name) -> where argparse
    stores it (default the field's name). typed: the value converted to the field's type, the
    field's default when absent; untyped: the text as given, nothing stored when absent."""
    flag = flag or (lambda name: "--" + name.replace("_", "-"))
    dest = dest or (lambda name: name)
    docs = field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if names is not None and f.name not in names:
            continue
        text = help_text(f, docs)
        if not typed:
            group.add_argument(flag(f.name), dest=dest(f.name), metavar=metavar(f),
                               default=argparse.SUPPRESS, help=text)
        elif hints[f.name] is bool:  # a switch that flips the default
            on = field_default(f)
            switch = flag(f.name) if not on else "--no-" + flag(f.name)[2:]
            group.add_argument(switch, dest=dest(f.name), default=on,
                               action="store_false" if on else "store_true", help=text)
        else:
            group.add_argument(flag(f.name), dest=dest(f.name), metavar=metavar(f),
                               default=field_default(f), help=text,
                               type=_parser(hints[f.name], flag(f.name)))


def values(args, cls, dest=None) -> dict:
    """{field: value} of the `add_flags(typed=True)` options of `cls` in parsed `args`."""
    dest = dest or (lambda name: name)
    return {f.name: getattr(args, dest(f.name)) for f in fields(cls)
            if hasattr(args, dest(f.name))}


def _parser(tp, option: str):
    def parse(text: str):
        try:
            return convert_value(text, tp, "the value")
        except ConfigError as err:  # argparse prints it as `argument --k: <message>`
            raise argparse.ArgumentTypeError(str(err)) from None
    parse.__name__ = option  # named in argparse's messages
    return parse


def field_default(f):
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else None


def help_text(f, docs: dict) -> str:
    """The field's comment and its default, for argparse (which reads % as a format)."""
    return f"{docs.get(f.name, '')} (default {_shown(field_default(f))})".replace("%", "%%")


def _shown(value) -> str:
    if isinstance(value, tuple):  # as it is typed: 20,200
        return ",".join(map(str, value))
    return repr(value)


def metavar(f) -> str:
    """INT, FLOAT, STR, INT|NONE; a tuple of integers INT,INT."""
    tp = f.type  # a string under `from __future__ import annotations`, else the type
    if not isinstance(tp, str):
        plain = isinstance(tp, type) and not typing.get_args(tp)
        tp = tp.__name__ if plain else str(tp).replace("typing.", "")
    tp = re.sub(r"tuple\[(\w+), (?:\.\.\.|\w+)\]", r"\1,\1", tp)
    return tp.replace(" ", "").upper()


def field_docs(cls) -> dict[str, str]:
    """{field: its comment}: the comment lines right above a field, then the comment at the end
    of its line (the last line, when the default spans several), as the house writes defaults
    with their units and sources. Read with `ast` and `tokenize`, so that a `#` or `=` inside a
    string, a multi-line default or a field without one are read as Python reads them."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):  # a class made at run time, or no source file
        return {}
    lines = source.splitlines()
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    docs = {}
    for node in ast.parse(source).body[0].body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, row = [], node.lineno - 1
        while row in comments and lines[row - 1].lstrip().startswith("#"):
            above.insert(0, comments[row])
            row -= 1
        after = comments.get(node.end_lineno)
        docs[node.target.id] = " ".join(above + ([after] if after else []))
    return docs
