#!/usr/bin/env bash
# The GPU proof of SCRATCHGEN_BACKEND=cuda in one command (issue 13). Run from a checkout on
# the GPU machine (CuPy for CUDA 13, PyTorch with CUDA, numba, nvcc; no network needed):
#
#   tools/gpu_check.sh [--dry-run] [--mnist DIR] [LOG_DIR]
#
# Stages, in order, each with its own log LOG_DIR/<stage>.log and a time cap:
#   install    pip install -e . without dependencies (no network, no build isolation)
#   versions   CuPy, CUDA runtime, driver, GPU, compute capability, numba, PyTorch, and the
#              first-compile time (choosing the cuda backend compiles every kernel)
#   pytest     SCRATCHGEN_BACKEND=cuda python -m pytest -q -x, the kernel tests first
#              (without the host-only notebook and pip-install tests)
#   gradcheck  scratchgen gradcheck on the cuda backend (first and second order)
#   wgan-gp    scratchgen train wgan-gp --dataset 8gaussians --steps 1000
#   vae        a short VAE on MNIST's test split (the t10k IDX files, all ../shared holds)
#              from --mnist DIR or $SCRATCHGEN_MNIST_DIR; skipped, with a line saying so,
#              when neither is given (the GPU machine has no ../shared)
#   resume     100 steps + resume to 200 against 200 straight: checkpoints must be identical
#   bench      benchmarks/workloads.py W1-W5 against PyTorch CUDA in the same process (every
#              step of both ends with a device synchronisation; medians)
#   bench-512  W2 and W4 at batch 512
# It ends with one summary table (stage, status, seconds, last line of its log) and exits 1
# if any stage failed or timed out. The whole run is capped at GPU_CHECK_BUDGET seconds
# (default 480: ~8 minutes on an H100/H200); a stage never runs past what is left.
# --dry-run prints the commands and creates nothing. PYTHON selects the interpreter.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage="usage: tools/gpu_check.sh [--dry-run] [--mnist DIR] [LOG_DIR]"
dry=0
mnist="${SCRATCHGEN_MNIST_DIR:-}"
log_dir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry=1 ;;
        --mnist) [ $# -ge 2 ] || { echo "$usage: --mnist needs a folder" >&2; exit 2; }
                 mnist="$2"; shift ;;
        --mnist=*) mnist="${1#--mnist=}" ;;
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "$usage: unknown option $1" >&2; exit 2 ;;
        *) [ -z "$log_dir" ] || { echo "$usage: one LOG_DIR only" >&2; exit 2; }
           log_dir="$1" ;;
    esac
    shift
done
log_dir="${log_dir:-runs/gpu-check-$(date +%Y%m%d-%H%M%S)}"
budget="${GPU_CHECK_BUDGET:-480}"
py="${PYTHON:-python3}"
runs="$log_dir/runs"
if [ -n "$mnist" ] && [ "$dry" = 0 ] && [ ! -d "$mnist" ]; then
    echo "gpu_check: --mnist $mnist is not a folder" >&2
    exit 2
fi

if [ "$dry" = 0 ]; then
    mkdir -p "$runs" || exit 2
    log_dir="$(cd "$log_dir" && pwd)"
    runs="$log_dir/runs"
fi
export SCRATCHGEN_BACKEND=cuda HYPOTHESIS_PROFILE=ci PYTHONUNBUFFERED=1

names=() statuses=() seconds=() details=()

record() {  # NAME STATUS SECONDS DETAIL
    names+=("$1"); statuses+=("$2"); seconds+=("$3"); details+=("$4")
}

stage() {  # NAME CAP_SECONDS COMMAND (a bash command line)
    local name="$1" cap="$2" cmd="$3"
    if [ "$dry" = 1 ]; then
        printf '[%s] (cap %ss)\n  %s\n' "$name" "$cap" "$cmd"
        return
    fi
    local left=$((budget - SECONDS)) limit="$cap"
    [ "$left" -lt "$limit" ] && limit="$left"
    if [ "$limit" -lt 10 ]; then
        record "$name" SKIP 0 "out of the ${budget}s budget"
        return
    fi
    local log="$log_dir/$name.log" t0=$SECONDS rc status
    echo "== [$name] $cmd" | tee "$log"
    timeout --kill-after=10 "$limit" bash -c "$cmd" >>"$log" 2>&1
    rc=$?
    case $rc in
        0) status=PASS ;;
        124|137) status=TIMEOUT ;;
        *) status="FAIL($rc)" ;;
    esac
    local detail
    detail="$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 | cut -c1-90)"
    [ "$status" = TIMEOUT ] && detail="stopped after ${limit}s; $detail"
    echo "   $status in $((SECONDS - t0))s: $detail"
    record "$name" "$status" "$((SECONDS - t0))" "$detail"
}

skip() {  # NAME REASON
    if [ "$dry" = 1 ]; then
        printf '[%s] skipped: %s\n' "$1" "$2"
    else
        echo "== [$1] skipped: $2"
        record "$1" SKIP 0 "$2"
    fi
}

sgc="$py -m scratchgen --backend cuda"
# (offline, so no build isolation: needs setuptools>=70.1, or an older one plus wheel)
stage install 120 "$py -m pip install -q --no-deps --no-build-isolation --no-index -e . && $py -c 'import scratchgen; print(\"scratchgen from\", scratchgen.__file__)'"
stage versions 90 "$py tools/gpu_check.py versions"
# host-only tests are left out: the notebooks (the GPU image has no nbclient) and the pip install
stage pytest 240 "$py -m pytest -q -x -p no:cacheprovider --ignore=tests/test_notebooks.py --ignore=tests/test_install.py tests/test_kernels_cuda.py tests/test_backend.py tests scratchgen"
stage gradcheck 90 "$sgc gradcheck"
stage wgan-gp 120 "$sgc train wgan-gp --dataset 8gaussians --steps 1000 --out $runs/wgan-gp"
if [ -n "$mnist" ]; then
    stage vae 90 "$sgc train vae --dataset mnist --split test --data-dir $mnist --steps 300 --out $runs/vae"
else
    skip vae "no MNIST folder given (--mnist DIR or SCRATCHGEN_MNIST_DIR)"
fi
toy="--dataset 8gaussians --ckpt-every 50 --eval-every 100000"
stage resume 90 "$sgc train wgan-gp $toy --steps 100 --out $runs/resume-a && $sgc train --resume $runs/resume-a --steps 200 && $sgc train wgan-gp $toy --steps 200 --out $runs/resume-b && $py tools/gpu_check.py same-state $runs/resume-a $runs/resume-b"
stage bench 150 "$py benchmarks/workloads.py --steps 50 --warmup 10 --block 10 --json $log_dir/workloads.json"
stage bench-512 90 "$py benchmarks/workloads.py --only W2,W4 --batch 512 --steps 30 --warmup 5 --block 10 --json $log_dir/workloads-512.json"

if [ "$dry" = 1 ]; then
    echo "(dry run: nothing was run; logs would go to $log_dir)"
    exit 0
fi

for b in bench bench-512; do  # the benchmark tables, as workloads.py printed them
    [ -f "$log_dir/$b.log" ] && sed -n '/^backend=/,/^wrote /p' "$log_dir/$b.log"
done
echo
echo "gpu_check summary ($SECONDS s of a ${budget}s budget; logs in $log_dir)"
printf '%-10s %-9s %6s  %s\n' stage status seconds detail
printf '%-10s %-9s %6s  %s\n' ---------- --------- ------ ------
failed=0
for i in "${!names[@]}"; do
    printf '%-10s %-9s %6s  %s\n' "${names[$i]}" "${statuses[$i]}" "${seconds[$i]}" "${details[$i]}"
    case "${statuses[$i]}" in PASS|SKIP) ;; *) failed=1 ;; esac
done
exit $failed
