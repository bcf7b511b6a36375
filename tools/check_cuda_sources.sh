#!/usr/bin/env bash
# Compile every kernels/cuda/*.cu with nvcc (to PTX, output discarded) so a syntax or
# type error in a CUDA source fails CI even on a machine without a GPU.
#
#   tools/check_cuda_sources.sh            # uses NVCC_ARCH=sm_90 by default
#   NVCC=/path/to/nvcc NVCC_ARCH=sm_80 tools/check_cuda_sources.sh
#
# Exits non-zero when nvcc is missing, when there is no .cu file, or when any file fails.
# The sources must stay self-contained (no #include): at run time they are compiled by
# NVRTC through cupy.RawModule, which does not see nvcc's implicit CUDA headers.
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
src_dir="$root/kernels/cuda"
nvcc="${NVCC:-nvcc}"
arch="${NVCC_ARCH:-sm_90}"

if ! command -v "$nvcc" >/dev/null 2>&1; then
    echo "check_cuda_sources: '$nvcc' not found on PATH: cannot compile the CUDA sources in" \
         "$src_dir. Install the CUDA toolkit (nvcc) or set NVCC=/path/to/nvcc." >&2
    exit 2
fi

shopt -s nullglob
files=("$src_dir"/*.cu)
if [ "${#files[@]}" -eq 0 ]; then
    echo "check_cuda_sources: no .cu files in $src_dir" >&2
    exit 3
fi

status=0
for f in "${files[@]}"; do
    rel="${f#"$root"/}"
    if grep -nE '^[[:space:]]*#[[:space:]]*include' "$f" >/dev/null; then
        echo "FAIL $rel: has #include; keep the sources self-contained for NVRTC" >&2
        grep -nE '^[[:space:]]*#[[:space:]]*include' "$f" >&2
        status=1
        continue
    fi
    if "$nvcc" -std=c++17 -arch="$arch" --ptx -Werror all-warnings -o /dev/null "$f"; then
        echo "ok   $rel"
    else
        echo "FAIL $rel (nvcc -std=c++17 -arch=$arch --ptx)" >&2
        status=1
    fi
done
exit $status
