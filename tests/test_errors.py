"""One UserError: every bad-input error is one, and every command prints it as one line."""

import pytest

from jessl.config import ConfigError
from jessl.data import ConversionError, FormatError, ImageError, RecordError, SourceError
from jessl.errors import USER_ERRORS, UserError, print_error
from jessl.eval.datasets import EvalError
from jessl.studies.sweep import SweepError


@pytest.mark.parametrize("cls", [ConfigError, FormatError, RecordError, ImageError, SourceError,
                                 ConversionError, EvalError, SweepError])
def test_every_bad_input_error_is_a_user_error(cls):
    assert issubclass(cls, UserError) and issubclass(cls, USER_ERRORS)


def test_a_message_of_several_lines_prints_as_one(capsys):
    print_error(ValueError("first\n  second\n\n"))
    assert capsys.readouterr().err == "jessl: error: first; second\n"


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jessl: error: "), err
    return lines[0]


def test_inspect_train_and_eval_print_one_line(tmp_path, capsys):
    from jessl.cli import main
    missing = str(tmp_path / "missing.jessl")
    assert main(["inspect", missing]) == 1  # a FileNotFoundError of the reader
    assert "missing.jessl" in _one_error_line(capsys.readouterr().err)
    assert main(["train", "--train", missing]) == 2  # a ConfigError
    assert "data.train" in _one_error_line(capsys.readouterr().err)
    assert main(["eval", "knn", "--random-init", "--backbone", "nope", "--dataset",
                 f"x={missing}"]) == 1  # an EvalError
    _one_error_line(capsys.readouterr().err)
