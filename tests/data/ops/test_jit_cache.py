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


def test_sources_hash_changes_with_any_file_under_the_tree(tmp_path):
    (tmp_path / "ops").mkdir()
    (tmp_path / "caller.py").write_text("x = 1\n")
    (tmp_path / "ops" / "callee.py").write_text("y = 1\n")
    before = _jit._hash_tree(tmp_path)
    _jit._hash_tree.cache_clear()
    (tmp_path / "ops" / "callee.py").write_text("y = 2\n")
    assert _jit._hash_tree(tmp_path) != before
    _jit._hash_tree.cache_clear()


def test_jessl_kernels_are_tree_stamped_others_are_not():
    from jessl.data.render import crop_chunk_kernel  # calls crop.py's kernels from render.py
    locator = crop_chunk_kernel._cache._impl.locator
    assert isinstance(locator, _jit._TreeStamp)
    assert locator.get_source_stamp()[1] == _jit.sources_hash()

    def elsewhere(x):
        return x
    plain = numba.njit(cache=True)(elsewhere)  # this test file is not under jessl/data
    assert not isinstance(plain._cache._impl.locator, _jit._TreeStamp)


CALLER = """
import numba
from callee import bump

@numba.njit(cache=True)
def caller(x):
    return bump(x)
"""


def test_editing_only_a_callee_recompiles_its_caller(tmp_path):
    """numba keys a cached kernel on its own file; the caller's machine code includes the
    callee, so without the tree stamp the second run would print the stale 2."""
    import subprocess
    import sys
    pkg = tmp_path / "kernels"
    pkg.mkdir()
    (pkg / "caller.py").write_text(CALLER)
    script = ("import sys; sys.path.insert(0, sys.argv[1])\n"
              "from jessl.data.ops import _jit\n"
              "_jit.KERNEL_SOURCES = sys.argv[1]\n"
              "from caller import caller; print(caller(1))\n")
    env = {**__import__("os").environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}

    def run():
        return subprocess.run([sys.executable, "-c", script, str(pkg)], env=env,
                              capture_output=True, text=True, check=True).stdout.strip()

    (pkg / "callee.py").write_text("import numba\n\n@numba.njit(cache=True)\n"
                                   "def bump(x):\n    return x + 1\n")
    assert run() == "2"
    assert list((tmp_path / "cache").rglob("caller.caller-*.nbi"))  # it was cached
    (pkg / "callee.py").write_text("import numba\n\n@numba.njit(cache=True)\n"
                                   "def bump(x):\n    return x + 2\n")
    assert run() == "3"
