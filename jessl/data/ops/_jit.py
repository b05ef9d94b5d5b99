"""The one JIT switch for the augmentation kernels, where their compiled code is kept, and the
notice printed while they compile.

Every kernel in `jessl.data.ops` is written once, as plain Python over NumPy arrays, and decorated
with `jit`. With the JIT on (the default) numba compiles it `nogil` so the loader's threads run
kernels in parallel; with `jessl.runtime.set_jit(False)` called before `jessl.data.ops` is first
imported, every kernel stays plain Python, so a debugger and print() work inside it (the same
idea as FFCV's `Compiler.set_enabled(False)`). The trainer calls it with `train.jit`, in one
logged place; without a call, `JESSL_JIT=0` in the environment is the default's way off.

Compiling takes seconds on the first run of a fresh install (numba compiles a kernel the first
time it is called with a new type signature, so only the ops a run's views draw are compiled) and
is then loaded from numba's on-disk cache in milliseconds. The cache sits next to the package
(`__pycache__`, numba's own choice) when that folder is writable, which holds for a virtual
environment or an editable install; for a read-only install it goes to the user's cache folder,
`~/.cache/jessl/numba`, not to a temporary one; a NUMBA_CACHE_DIR set by the user always wins.
(numba has one cache folder setting per process, so in that read-only case other packages'
cached numba functions land there too, each under its own source path.) A cached kernel is
valid only for the exact sources of jessl/data (`_TreeStamp`), not just of its own file.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import types
from pathlib import Path

import numba
import numba.core.caching
from numba.core import event

from jessl.runtime import jit_choice

PACKAGE = Path(__file__).resolve().parents[2]  # the jessl package folder


def jit_enabled() -> bool:
    """Whether kernels are compiled: `jessl.runtime.jit_choice()` (set_jit's, else JESSL_JIT)
    and numba's own switch is off."""
    return jit_choice() and not numba.config.DISABLE_JIT


def user_cache_dir(environ=os.environ) -> Path:
    """~/.cache/jessl/numba, or under XDG_CACHE_HOME when that is set (the XDG convention)."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jessl" / "numba"


def cache_dir_override(package: Path = PACKAGE, environ=os.environ) -> Path | None:
    """The folder numba should cache the kernels in, or None to leave numba's choice: None when
    the user set NUMBA_CACHE_DIR or the package's folders are writable (numba then caches in
    each module's __pycache__, which lives as long as the install)."""
    if environ.get("NUMBA_CACHE_DIR"):
        return None
    folders = [package / "data", package / "data" / "ops"]
    if all(os.access(f / "__pycache__" if (f / "__pycache__").is_dir() else f, os.W_OK)
           for f in folders):
        return None
    return user_cache_dir(environ)


def cache_dir() -> str:
    """Where the kernels are cached, in words for the notice."""
    return numba.config.CACHE_DIR or f"the __pycache__ folders under {PACKAGE / 'data'}"


class CompileNotice(event.Listener):
    """Prints one line, once per process, when numba starts compiling a jessl kernel: numba
    sends "numba:compile" only after a cache miss, so a warm cache prints nothing."""

    def __init__(self, stream=None):
        self.stream, self.printed = stream, False

    def on_start(self, ev):
        dispatcher = (ev.data or {}).get("dispatcher")
        fn = getattr(dispatcher, "py_func", None)
        if self.printed or not (getattr(fn, "__module__", None) or "").startswith("jessl."):
            return
        self.printed = True
        print(f"jessl: compiling the augmentation kernels these views use (first run after "
              f"installing; cached in {cache_dir()}) ...", file=self.stream or sys.stderr,
              flush=True)

    def on_end(self, ev):
        pass


KERNEL_SOURCES = PACKAGE / "data"  # every file a kernel or one of its callees can live in


def sources_hash(root: Path | None = None) -> bytes:
    """sha256 of every .py file under `root` (default KERNEL_SOURCES; names and bytes, in
    sorted order), computed once per process and folder."""
    return _hash_tree(Path(root or KERNEL_SOURCES))


@functools.lru_cache(maxsize=None)
def _hash_tree(root: Path) -> bytes:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.digest()


class _TreeStamp:
    """A numba cache locator mixin for jessl's kernels: the source stamp that decides whether a
    cached kernel is still valid is its own file's stamp (numba's) *and* a hash of every file
    under jessl/data. numba checks only the caller's file, and a kernel's compiled code includes
    its callees from other files (render.py's passes call crop.py's and normalize.py's kernels):
    without this, editing a callee alone would leave the caller's stale machine code in use.
    Any edit under jessl/data recompiles the kernels once (seconds); nothing else changes."""

    def get_source_stamp(self):
        return super().get_source_stamp(), sources_hash()

    @classmethod
    def from_function(cls, py_func, py_file):
        if not Path(py_file).resolve().is_relative_to(Path(KERNEL_SOURCES).resolve()):
            return None  # not a jessl kernel: numba's own locators decide
        return super().from_function(py_func, py_file)


def install_tree_stamp(caching=numba.core.caching) -> list[type]:
    """Put the tree-stamped locators first in numba's list (once per process); the names
    changed across numba versions (0.59: _UserProvidedCacheLocator, _CacheImpl). Returns the
    jessl locator classes in place."""
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")
    installed = [c for c in impl._locator_classes if issubclass(c, _TreeStamp)]
    if installed:
        return installed
    bases = [getattr(caching, name, None) or getattr(caching, "_" + name)
             for name in ("UserProvidedCacheLocator", "InTreeCacheLocator")]
    ours = [type("Tree" + base.__name__.lstrip("_"), (_TreeStamp, base), {}) for base in bases]
    impl._locator_classes = ours + list(impl._locator_classes)
    return ours


_ENABLED = jit_enabled()  # read once, when the kernels are built: their modules decorate them
NOTICE = CompileNotice()
if _ENABLED:
    _override = cache_dir_override()
    if _override is not None:  # before any kernel is decorated: numba picks its folder then
        numba.config.CACHE_DIR = str(_override)
    event.register("numba:compile", NOTICE)
    install_tree_stamp()


def jit(fn):
    """Compile `fn` with numba (nogil, on-disk cache, IEEE maths) or return it unchanged."""
    if not _ENABLED:
        return fn
    # fastmath stays off: the kernels are compared bit for bit with their plain-Python selves and
    # level for level with torchvision, and reassociated float sums would break both.
    return numba.njit(nogil=True, cache=True, fastmath=False)(fn)


def jit_inline(fn):
    """`jit` for small helpers that numba inlines into each caller's IR (`inline="always"`), so
    they cost no compiled library of their own: typing and lowering them once per caller is
    cheaper than an LLVM module per helper plus linking it in (the cold start, issue 17)."""
    if not _ENABLED:
        return fn
    return numba.njit(nogil=True, cache=True, fastmath=False, inline="always")(fn)


def jit_uncached(fn):
    """`jit` without the on-disk cache, for code that has no source file (numba keys its cache on
    the file): the generated sampler when `_pipeline.py` is out of date (`generate.load`)."""
    if not _ENABLED:
        return fn
    return numba.njit(nogil=True, cache=False, fastmath=False)(fn)


def plain(fn, substitutes=()):
    """The plain-Python function under kernel `fn`, every kernel it calls (named in its globals)
    replaced by its plain self in turn, and each callee in `substitutes` ((kernel, function)
    pairs) by that function: a kernel's own `py_func` would still call its callees compiled,
    which compiles them. Runs anywhere without numba compiling anything, and gives the kernel's
    bits (IEEE maths both ways; tests compare)."""
    return _plain(getattr(fn, "py_func", fn), tuple(substitutes), {})


def _plain(fn, substitutes, done):
    if fn in done:  # a callee reached twice (or recursion): one copy
        return done[fn]
    namespace = dict(fn.__globals__)  # a copy: the module's own names stay compiled
    copy = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__,
                              fn.__closure__)
    done[fn] = copy
    for name in fn.__code__.co_names:
        value = namespace.get(name)
        swap = next((new for old, new in substitutes if value is old), None)
        if swap is not None:
            namespace[name] = swap
        elif hasattr(value, "py_func"):
            namespace[name] = _plain(value.py_func, substitutes, done)
        elif isinstance(value, types.FunctionType) and value.__module__.startswith("jessl."):
            namespace[name] = _plain(value, substitutes, done)  # a kernel with the JIT off
    return copy
