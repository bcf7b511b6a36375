"""Where numba caches the compiled kernels: a per-user folder, never inside the installed package.

numba's default for ``cache=True`` is the source's ``__pycache__``, i.e. inside site-packages
after ``pip install .``. pip does not remove those files on uninstall, so a later
``pip install -e .`` in the same environment leaves ``site-packages/scratchgen/`` behind as an
empty namespace package that shadows the editable install; a read-only install cannot cache.

Imported first by :mod:`scratchgen.kernels.cpu`, this puts one locator in front of numba's own,
for source files of ``scratchgen.kernels`` only (other libraries keep numba's defaults). Folder:
``$NUMBA_CACHE_DIR`` when the user set it (numba's own locator then applies), else the first
writable of ``$XDG_CACHE_HOME/scratchgen/numba`` (default ``~/.cache/scratchgen/numba``) and
``<tempdir>/scratchgen-numba-<uid>``; one sub-folder per install location, as numba does.
"""
import os
import tempfile
from pathlib import Path

from numba.core import caching, config

_PACKAGE = Path(__file__).resolve().parent.parent  # the installed scratchgen/kernels


def cache_roots():
    """Candidate cache folders, in order of preference. The first is
    ``scratchgen.io.user_cache_dir("numba")``, spelled out: ``kernels/`` imports nothing from
    ``scratchgen``."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    uid = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return [Path(xdg) / "scratchgen" / "numba",
            Path(tempfile.gettempdir()) / f"scratchgen-numba-{uid}"]


class ScratchgenCacheLocator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    """numba cache locator for kernels defined under ``scratchgen.kernels``."""

    def __init__(self, py_func, py_file, root):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = os.path.join(root, self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self):
        return self._cache_path

    @classmethod
    def from_function(cls, py_func, py_file):
        if config.CACHE_DIR or not Path(py_file).resolve().is_relative_to(_PACKAGE):
            return None
        for root in cache_roots():
            self = cls(py_func, py_file, root)
            try:
                self.ensure_cache_path()
            except OSError:
                continue
            return self
        return None


def _install():
    impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl  # renamed in numba 0.60
    if ScratchgenCacheLocator not in impl._locator_classes:
        impl._locator_classes.insert(0, ScratchgenCacheLocator)


_install()
