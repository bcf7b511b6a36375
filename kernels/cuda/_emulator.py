"""A NumPy stand-in for CuPy's kernel launches + the ``.cu`` kernels, for testing without a GPU.

Not used at run time. ``tests/test_kernels_cuda.py`` patches ``scratchgen.kernels.cuda``
with :func:`install` so that its whole orchestration (im2col layout, GEMM shapes,
transposes, batch chunking, argument types) runs on NumPy, with each CUDA kernel replaced by
a line-by-line Python transliteration of its body (one loop iteration per CUDA thread
index), or by the ``.cu`` source itself compiled for the host (``_host_build``) and run
one emulated CUDA thread per call. The test-only CuPy stand-in (``tools/standin/cupy``)
uses :func:`raw_module_class` with ``collapse=True``: each launch is one host call whose
grid-stride loop covers the whole range, so the real C runs at native speed.

Each launch is checked against the kernel's C signature parsed from the ``.cu`` file:
argument count, pointer dtypes, C-contiguity of every array, and the exact NumPy scalar
types (``long long`` <- int64, ``int`` <- int32, ``T`` <- the float type).

Keep the ``_k_*`` functions in step with the ``.cu`` sources.
"""
import ctypes
import math
import re
import types

import numpy as np

_C_SCALARS = {"sg_i64": np.int64, "int": np.int32}


# --------------------------------------------------------------- kernel transliterations

def _k_im2col(x, cols, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo):
    L = Ho * Wo
    total = N * C * kh * kw * L
    for idx in range(total):
        t = idx
        j = t % Wo; t //= Wo
        i = t % Ho; t //= Ho
        n = t % N; t //= N
        q = t % kw; t //= kw
        p = t % kh
        c = t // kh
        ih = i * sh - ph + p
        iw = j * sw - pw + q
        v = 0.0
        if 0 <= ih < H and 0 <= iw < W:
            v = x[((n * C + c) * H + ih) * W + iw]
        cols[idx] = v


def _cdiv(a, b):
    """C integer division (truncates toward zero); the .cu only divides non-negatives."""
    assert a >= 0 and b > 0, (a, b)
    return a // b


def _k_col2im(cols, gx, N, C, H, W, kh, kw, sh, sw, ph, pw, Ho, Wo):
    L = Ho * Wo
    total = N * C * H * W
    for idx in range(total):
        t = idx
        w = t % W; t //= W
        h = t % H; t //= H
        c = t % C
        n = t // C
        hp = h + ph
        wp = w + pw
        i_lo = _cdiv(hp - kh, sh) + 1 if hp >= kh else 0
        j_lo = _cdiv(wp - kw, sw) + 1 if wp >= kw else 0
        i_hi = min(_cdiv(hp, sh), Ho - 1)
        j_hi = min(_cdiv(wp, sw), Wo - 1)
        acc = 0.0
        for i in range(i_lo, i_hi + 1):
            p = hp - i * sh
            assert 0 <= p < kh
            for j in range(j_lo, j_hi + 1):
                q = wp - j * sw
                assert 0 <= q < kw
                r = (c * kh + p) * kw + q
                acc += cols[r * (N * L) + n * L + i * Wo + j]
        gx[idx] = acc


def _k_adam(p, g, m, v, vmax, n, amsgrad, decay, b1, c1, b2, c2, inv_sb2, eps, step, wd):
    for i in range(n):
        gi = g[i]
        if decay:
            gi = p[i] * wd + gi
        mi = m[i] * b1 + c1 * gi
        m[i] = mi
        vi = v[i] * b2 + (gi * gi) * c2
        v[i] = vi
        if amsgrad:
            vm = vmax[i]
            if not vi <= vm:
                vm = vi
            vmax[i] = vm
            vi = vm
        p[i] -= (mi / (math.sqrt(vi) * inv_sb2 + eps)) * step


_BODIES = {"im2col": _k_im2col, "im2col32": _k_im2col, "col2im": _k_col2im,
           "col2im32": _k_col2im, "adam": _k_adam}


# ----------------------------------------------------------------- signatures from .cu

def parse_signatures(path):
    """{kernel base name: [(c_type, is_pointer, is_const)]} from a .cu file's
    ``extern "C" __global__ void NAME_##SUFFIX(...)`` instantiation macro."""
    with open(path) as f:
        return _parse_code(f.read())


def _parse_code(code):
    sigs = {}
    for m in re.finditer(r'extern "C" __global__ void (\w+)_##SUFFIX\(([^)]*)\)', code):
        params = []
        for raw in m.group(2).replace("\\", " ").split(","):
            toks = raw.replace("*", " * ").split()
            ctype = [t for t in toks if t not in ("const", "*", "__restrict__")][0]
            params.append((ctype, "*" in toks, "const" in toks))
        sigs[m.group(1)] = params
    return sigs


class _EmuKernel:
    def __init__(self, base, dtype, sig, host_lib=None, collapse=False):
        self.base, self.dtype, self.sig = base, np.dtype(dtype), sig
        self.host_lib, self.collapse = host_lib, collapse
        self.launches = 0

    def __call__(self, grid, block, args):
        assert len(grid) == 1 and len(block) == 1 and grid[0] >= 1 and block[0] >= 1
        assert len(args) == len(self.sig), (self.base, len(args), len(self.sig))
        flat = []
        for a, (ctype, is_ptr, _) in zip(args, self.sig):
            if is_ptr:
                assert isinstance(a, np.ndarray), (self.base, type(a))
                assert a.dtype == self.dtype, (self.base, a.dtype, self.dtype)
                assert a.flags.c_contiguous, f"{self.base}: non-contiguous array argument"
                flat.append(a.reshape(-1))  # a view: writes land in the caller's array
            else:
                want = self.dtype.type if ctype == "T" else _C_SCALARS[ctype]
                assert type(a) is want, (self.base, ctype, type(a))
                flat.append(a.item())
        self.launches += 1
        if self.host_lib is None:
            _BODIES[self.base](*flat)
        elif self.collapse:  # one emulated thread whose grid-stride loop does everything
            self._run_host(1, 1, args)
        else:
            self._run_host(grid[0], block[0], args)

    def _run_host(self, grid, block, args):
        """Run the C source compiled for the host, one call per emulated CUDA thread."""
        suffix = "f32" if self.dtype == np.float32 else "f64"
        fn = getattr(self.host_lib, f"{self.base}_{suffix}")
        ftype = ctypes.c_float if self.dtype == np.float32 else ctypes.c_double
        ctypes_of = {"sg_i64": ctypes.c_longlong, "int": ctypes.c_int, "T": ftype}
        fn.argtypes = [ctypes.c_void_p if p else ctypes_of[c] for c, p, _ in self.sig]
        fn.restype = None
        cargs = [a.ctypes.data if p else a.item() for a, (c, p, _) in zip(args, self.sig)]
        setter = self.host_lib.sg_host_set_launch
        setter.argtypes = [ctypes.c_uint] * 4
        for b in range(grid):
            for t in range(block):
                setter(grid, block, b, t)
                fn(*cargs)


class _EmuRawModule:
    """cupy.RawModule: ``get_function`` checks the kernel exists for the dtype and returns
    an :class:`_EmuKernel`. ``host_libs`` ({source text: ctypes lib}) makes the kernels of
    those sources run as compiled C; with ``build_host`` every source is compiled for the
    host on first use; ``collapse`` runs each launch as one emulated thread (fast)."""
    host_libs = {}
    build_host = False
    collapse = False

    def __init__(self, code=None, options=(), **kw):
        self.code = code
        self.options = options
        self._sigs = None

    def _host_lib(self):
        lib = self.host_libs.get(self.code)
        if lib is None and self.build_host:
            from . import _host_build
            lib = self.host_libs[self.code] = _host_build.build_code(self.code)
        return lib

    def get_function(self, name):
        base, suffix = name.rsplit("_", 1)
        dtype = {"f32": np.float32, "f64": np.float64}[suffix]
        if self._sigs is None:
            self._sigs = _parse_code(self.code)
        assert base in self._sigs, f"kernel {name} is not in the module"
        lib = self._host_lib()
        if self.host_libs and not self.build_host:
            assert lib is not None, "host libraries built from other sources"
        ctype = {"f32": "float", "f64": "double"}[suffix]
        assert re.search(rf"SG_\w+_INSTANTIATE\({ctype}, {suffix}\)", self.code), name
        return _EmuKernel(base, dtype, self._sigs[base], lib, self.collapse)


def raw_module_class(host_libs=None, build_host=False, collapse=False):
    """A cupy.RawModule stand-in class with its own host-library cache."""
    return type("RawModule", (_EmuRawModule,), {
        "host_libs": dict(host_libs or {}), "build_host": build_host, "collapse": collapse})


def fake_cupy(host_libs=None):
    """A module that answers the CuPy calls kernels/cuda makes, with NumPy.

    ``host_libs``: {source text: ctypes.CDLL from ``_host_build.build``}; kernels of those
    sources run as the compiled C code, the others as the Python transliterations.
    """
    cp = types.ModuleType("fake_cupy")
    cp.RawModule = raw_module_class(host_libs)
    for name in ("asarray", "empty", "zeros", "ones", "eye", "arange", "matmul", "float32",
                 "float64", "ndarray"):
        setattr(cp, name, getattr(np, name))
    cp.asnumpy = np.array

    def ascontiguousarray(a, dtype=None):
        assert isinstance(a, np.ndarray)
        return np.ascontiguousarray(a, dtype=dtype)

    cp.ascontiguousarray = ascontiguousarray
    device = types.SimpleNamespace(id=0, synchronize=lambda: None)
    cp.cuda = types.SimpleNamespace(Device=lambda *a: device)
    return cp


def install(monkeypatch, cuda_module, host_libs=None):
    """Point ``cuda_module`` (scratchgen.kernels.cuda) at the emulator for one test."""
    cp = fake_cupy(host_libs)
    monkeypatch.setattr(cuda_module, "_cupy", lambda: cp)
    monkeypatch.setattr(cuda_module, "_modules", {})
    monkeypatch.setattr(cuda_module, "_kernels", {})
    return cp
