"""jessl.flags: command-line options from dataclass fields, help from the comments beside them."""

import argparse
from dataclasses import dataclass

import pytest

from jessl.flags import add_flags, field_docs, values


@dataclass
class Tricky:
    """A docstring that looks like a field to a line regex:
        fake: int = 1  # not a field
    """
    needed: int  # a field without a default
    # a comment block above a field documents it,
    # over two lines
    hashed: str = "#000"  # a colour: the # in the string is not a comment
    equals: str = "a=b # c"  # an = and a # in the string
    widths: tuple[int, ...] = (2048,  # not this one: the statement goes on
                               2048)  # the multi-line default's comment
    # a comment cut off from the field by a blank line documents nothing

    plain: float = 0.5
    on: bool = True  # a switch that is on

    def method(self):  # a method's comment is no field's
        return 1


def test_field_docs_reads_comments_as_python_does():
    assert field_docs(Tricky) == {
        "needed": "a field without a default",
        "hashed": "a comment block above a field documents it, over two lines a colour: the # "
                  "in the string is not a comment",
        "equals": "an = and a # in the string",
        "widths": "the multi-line default's comment",
        "plain": "",
        "on": "a switch that is on"}


def test_a_class_without_source_has_no_docs():
    assert field_docs(type("Made", (), {"__annotations__": {"x": int}})) == {}


def test_typed_flags_parse_switch_and_show_defaults(capsys):
    p = argparse.ArgumentParser()
    add_flags(p, Tricky, names={"widths", "plain", "on", "hashed"})
    args = p.parse_args(["--widths", "512-256", "--no-on"])
    assert values(args, Tricky) == {"hashed": "#000", "widths": (512, 256), "plain": 0.5,
                                    "on": False}
    text = " ".join(p.format_help().split())
    assert "--widths INT,INT the multi-line default's comment (default 2048,2048)" in text
    assert "--no-on a switch that is on (default True)" in text
    with pytest.raises(SystemExit):
        p.parse_args(["--plain", "half"])
    assert "argument --plain: the value must be a number, got 'half'" in capsys.readouterr().err


def test_untyped_flags_keep_the_text_and_store_nothing_when_absent():
    p = argparse.ArgumentParser()
    add_flags(p, Tricky, names={"plain"}, typed=False, flag=lambda n: f"--sec.{n}",
              dest=lambda n: f"set:sec.{n}")
    assert vars(p.parse_args([])) == {}
    assert vars(p.parse_args(["--sec.plain", "0.25"])) == {"set:sec.plain": "0.25"}
