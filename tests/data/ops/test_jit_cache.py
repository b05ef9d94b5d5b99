"""Where the compiled kernels are cached, and the one-line notice printed while they compile."""

import io

import numba
from numba.core import event

from jessl.data.ops import _jit


def test_user_numba_cache_dir_wins(tmp_path):
    locked = tmp_path / "jessl"
    (locked / "data" / "ops").mkdir(parents=True)
    assert _jit.cache_dir_override(locked, {"NUMBA_CACHE_DIR": str(tmp_path / "mine")}) is None


def test_writable_install_keeps_numbas_in_tree_cache(tmp_path):
    (tmp_path / "jessl" / "data" / "ops").mkdir(parents=True)
    assert _jit.cache_dir_override(tmp_path / "jessl", {}) is None


def test_read_only_install_caches_in_the_users_cache_folder(tmp_path, monkeypatch):
    package = tmp_path / "jessl"
    (package / "data" / "ops").mkdir(parents=True)
    # a read-only install (chmod does not stop root, who runs some of these machines)
    monkeypatch.setattr(_jit.os, "access", lambda path, mode: False)
    environ = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert _jit.cache_dir_override(package, environ) == tmp_path / "cache" / "jessl" / "numba"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert _jit.cache_dir_override(package, {}) == tmp_path / "home" / ".cache" / "jessl" / "numba"


def _fresh_kernel(module: str):
    def add_one(x):
        return x + 1
    add_one.__module__ = module
    return numba.njit(add_one)  # no cache: every test run compiles it


def test_notice_printed_once_when_a_jessl_kernel_compiles():
    stream = io.StringIO()
    notice = _jit.CompileNotice(stream)
    with event.install_listener("numba:compile", notice):
        _fresh_kernel("tests.not_jessl")(1)
        assert stream.getvalue() == ""  # someone else's numba function: not ours to announce
        first, second = _fresh_kernel("jessl.data.fake"), _fresh_kernel("jessl.data.fake")
        first(1)
        first(2)  # compiled already: no compile, no line
        second(1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jessl: compiling the augmentation kernels")
    assert _jit.cache_dir() in lines[0]


def test_no_notice_when_nothing_compiles():
    kernel = _fresh_kernel("jessl.data.fake")
    kernel(1)
    stream = io.StringIO()
    with event.install_listener("numba:compile", _jit.CompileNotice(stream)):
        kernel(5)
    assert stream.getvalue() == ""
