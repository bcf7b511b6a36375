#!/usr/bin/env bash
# The GPU proof of SCRATCHGEN_BACKEND=cuda in one command (issues 13, 32), or its rehearsal on
# the CPU. On the GPU machine (CuPy for CUDA 13, PyTorch with CUDA, numba; no network needed):
#
#   tools/gpu_check.sh [--dry-run] [--rehearse] [--mnist DIR] LOG_DIR
#
# MNIST: --mnist DIR, else $SCRATCHGEN_MNIST_DIR, else shared/data/mnist inside the checkout,
# else ../shared/data/mnist beside it. The device tool sends the working tree (and a shared/
# folder inside it), not ../shared: before the run, copy the data in with
#   mkdir -p shared/data && cp -r ../shared/data/mnist shared/data/   (11 MB; git ignores it)
# One absolute path is exported to every stage as SCRATCHGEN_MNIST_DIR; none found: exit 2.
#
# Stages, in order, each logged to LOG_DIR/<stage>.log under a time cap:
#   install    pip install -e . without dependencies (no network, no build isolation)
#   versions   CuPy, CUDA runtime, driver, GPU, numba, PyTorch; the kernels' first compile
#   gradcheck  scratchgen gradcheck on the cuda backend (first and second order)
#   wgan-gp    scratchgen train wgan-gp --dataset 8gaussians --steps 1000
#   vae        a VAE on MNIST's test split, 300 steps (two evaluations on 1,000 held-out digits)
#   resume     100 steps + resume to 200 against 200 straight: checkpoints must be identical
#   bench      benchmarks/workloads.py W1-W5 against PyTorch CUDA, PyTorch's TF32 off
#   bench-512  W2 and W4 at batch 512
#   pytest     the gpu-marked tests (tests/conftest_gpu.py: kernels, backend, engine, optim,
#              nn, trainer, cli) in-process on CuPy; SCRATCHGEN_REQUIRE_REAL_CUPY=1 stops
#              the run if `import cupy` finds the test stand-in
# The run is capped at GPU_CHECK_BUDGET seconds (default 540, for one 600 s command); no
# stage runs past what is left, and pytest, last, gets all that is left. It ends with one
# table (stage, status, seconds, last log line) and exits 1 if any stage failed or timed out.
# On the device tool, one call (about 9 minutes at most; logs packed into $OUT):
#   tools/gpu_check.sh /tmp/gc; r=$?; tar czf $OUT/gpu-check.tgz -C /tmp --exclude='*.npz' gc; exit $r
#
# --rehearse: the same stages on this CPU against a "real-looking" CuPy: the strict stand-in
# installed outside the tree (a temporary site folder) and reporting itself as CuPy, with
# fewer training and benchmark steps, and every cap and the budget times GPU_CHECK_SCALE
# (default 3: a busy CPU is slow at this); first a guard stage checks that the undisguised
# stand-in is refused (pip install runs as --dry-run). It proves the plumbing, the data paths,
# the guards and the budget accounting, not the GPU.
# --dry-run prints the plan and the caps' sum and creates nothing. PYTHON picks the interpreter.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"

usage="usage: tools/gpu_check.sh [--dry-run] [--rehearse] [--mnist DIR] LOG_DIR"
dry=0 rehearse=0 log_dir="" mnist_arg=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry=1 ;;
        --rehearse) rehearse=1 ;;
        --mnist) [ $# -ge 2 ] || { echo "$usage: --mnist needs a folder" >&2; exit 2; }
                 mnist_arg="$2"; shift ;;
        --mnist=*) mnist_arg="${1#--mnist=}" ;;
        -h|--help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "$usage: unknown option $1" >&2; exit 2 ;;
        *) [ -z "$log_dir" ] || { echo "$usage: one LOG_DIR only" >&2; exit 2; }
           log_dir="$1" ;;
    esac
    shift
done
[ -n "$log_dir" ] || { echo "$usage: LOG_DIR is needed (the logs go there)" >&2; exit 2; }
py="${PYTHON:-python3}"

# ---- MNIST: one absolute folder for every stage
has_mnist() { [ -f "$1/t10k-images-idx3-ubyte.gz" ] || [ -f "$1/t10k-images-idx3-ubyte" ]; }
if [ -n "$mnist_arg" ]; then
    [ -d "$mnist_arg" ] || { echo "gpu_check: --mnist $mnist_arg is not a folder" >&2; exit 2; }
    has_mnist "$mnist_arg" || { echo "gpu_check: --mnist $mnist_arg holds no MNIST" \
        "t10k-images-idx3-ubyte(.gz)" >&2; exit 2; }
    mnist="$mnist_arg" mnist_from="--mnist"
else
    mnist="" mnist_from=""
    for cand in "${SCRATCHGEN_MNIST_DIR:-}" "$root/shared/data/mnist" "$root/../shared/data/mnist"; do
        if [ -n "$cand" ] && has_mnist "$cand"; then mnist="$cand" mnist_from="$cand"; break; fi
    done
    [ -n "${SCRATCHGEN_MNIST_DIR:-}" ] && [ "$mnist_from" = "${SCRATCHGEN_MNIST_DIR:-}" ] \
        && mnist_from="SCRATCHGEN_MNIST_DIR"
fi
mnist_help="copy it into the checkout (mkdir -p shared/data && cp -r ../shared/data/mnist shared/data/) or pass --mnist DIR"
if [ -z "$mnist" ]; then
    [ "$dry" = 1 ] || { echo "gpu_check: no MNIST found; $mnist_help" >&2; exit 2; }
    echo "MNIST: not found (a real run stops here: $mnist_help)"
else
    mnist="$(cd "$mnist" && pwd)"
    echo "MNIST: $mnist (from $mnist_from)"
fi

# ---- the work, scaled down for the rehearsal
scale=1
[ "$rehearse" = 1 ] && scale="${GPU_CHECK_SCALE:-3}"
budget="${GPU_CHECK_BUDGET:-$((540 * scale))}"
if [ "$rehearse" = 1 ]; then
    wgan="--steps 6 --eval-every 3" resume_every=1 resume_a=2 resume_b=3
    vae="--steps 4 --eval-every 2 --set eval_examples=20 --set iwae_k=4"
    bench_args="--only W1,W2 --steps 2 --warmup 1 --block 1"
    bench512_args="--only W2 --batch 512 --steps 1 --warmup 0 --block 1"
else
    wgan="--steps 1000" resume_every=50 resume_a=100 resume_b=200
    vae="--steps 300 --eval-every 150 --set eval_examples=1000"
    bench_args="--steps 50 --warmup 10 --block 10"
    bench512_args="--only W2,W4 --batch 512 --steps 30 --warmup 5 --block 10"
fi

if [ "$dry" = 0 ]; then
    mkdir -p "$log_dir/runs" || exit 2
    log_dir="$(cd "$log_dir" && pwd)"
fi
runs="$log_dir/runs"
export SCRATCHGEN_BACKEND=cuda HYPOTHESIS_PROFILE=ci PYTHONUNBUFFERED=1
export SCRATCHGEN_MNIST_DIR="$mnist" SCRATCHGEN_REQUIRE_REAL_CUPY=1
site=""
if [ "$rehearse" = 1 ] && [ "$dry" = 0 ]; then
    site="$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-site.XXXXXX")" || exit 2
    trap 'rm -rf "$site"' EXIT
    "$py" tools/gpu_check.py disguise "$site" >/dev/null || exit 2
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" GPU_CHECK_REHEARSAL=1
    echo "REHEARSAL: cupy is the strict stand-in installed as CuPy in $site (no GPU is used)"
fi

names=() statuses=() seconds=() details=()
caps_sum=0

record() {  # NAME STATUS SECONDS DETAIL
    names+=("$1"); statuses+=("$2"); seconds+=("$3"); details+=("$4")
}

stage() {  # NAME CAP_SECONDS COMMAND (a bash command line); CAP "rest": all that is left
    local name="$1" cap="$2" cmd="$3"
    [ "$cap" = rest ] || { cap=$((cap * scale)); caps_sum=$((caps_sum + cap)); }
    if [ "$dry" = 1 ]; then
        printf '[%s] (cap %s)\n  %s\n' "$name" "$([ "$cap" = rest ] && echo "the rest" || echo "${cap}s")" "$cmd"
        return
    fi
    local left=$((budget - SECONDS)) limit="$cap"
    { [ "$cap" = rest ] || [ "$left" -lt "$cap" ]; } && limit="$left"
    if [ "$limit" -lt 10 ]; then
        record "$name" SKIP 0 "out of the ${budget}s budget"
        return
    fi
    local log="$log_dir/$name.log" t0=$SECONDS rc status
    echo "== [$name] (limit ${limit}s) $cmd" | tee "$log"
    timeout --kill-after=5 "$limit" bash -c "$cmd" >>"$log" 2>&1
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

sgc="$py -m scratchgen --backend cuda"
if [ "$rehearse" = 1 ]; then  # the guard must refuse the undisguised stand-in
    stage guard 60 "! SCRATCHGEN_BACKEND=cuda PYTHONPATH=$root/tools/standin $py -m pytest -q -p no:cacheprovider --co tests/test_backend.py > $log_dir/guard-refused.txt 2>&1 && grep -q 'found the test stand-in' $log_dir/guard-refused.txt && echo 'the undisguised stand-in is refused:' && grep -o 'SCRATCHGEN_REQUIRE_REAL_CUPY=1 but.*' $log_dir/guard-refused.txt"
    install="$py -m pip install -q --dry-run --no-deps --no-build-isolation --no-index -e ."
else
    install="$py -m pip install -q --no-deps --no-build-isolation --no-index -e ."
fi
# (offline, so no build isolation: needs setuptools>=70.1, or an older one plus wheel)
stage install 30 "$install && $py -c 'import scratchgen; print(\"scratchgen from\", scratchgen.__file__)'"
stage versions 90 "$py tools/gpu_check.py versions"
stage gradcheck 45 "$sgc gradcheck"
stage wgan-gp 60 "$sgc train wgan-gp --dataset 8gaussians $wgan --out $runs/wgan-gp"
stage vae 45 "$sgc train vae --dataset mnist --split test --data-dir $mnist $vae --out $runs/vae"
toy="--dataset 8gaussians --ckpt-every $resume_every --eval-every 100000"
stage resume 45 "$sgc train wgan-gp $toy --steps $resume_a --out $runs/resume-a && $sgc train --resume $runs/resume-a --steps $resume_b && $sgc train wgan-gp $toy --steps $resume_b --out $runs/resume-b && $py tools/gpu_check.py same-state $runs/resume-a $runs/resume-b"
stage bench 75 "$py tools/gpu_check.py bench $bench_args --json $log_dir/workloads.json"
stage bench-512 40 "$py tools/gpu_check.py bench $bench512_args --json $log_dir/workloads-512.json"
gpu_tests="tests/test_kernels_cuda.py tests/test_backend.py tests/test_engine.py tests/test_optim.py tests/test_nn.py tests/test_trainer.py tests/test_cli.py"
stage pytest rest "$py -m pytest -q -m gpu -p no:cacheprovider --maxfail=20 -rfE --durations=10 $gpu_tests"

if [ "$dry" = 1 ]; then
    echo "caps before pytest: ${caps_sum}s of the ${budget}s budget; pytest gets the rest" \
         "(at least $((budget - caps_sum))s)"
    echo "(dry run: nothing was run; logs would go to $log_dir)"
    exit 0
fi

for b in bench bench-512; do  # the benchmark tables, as workloads.py printed them
    [ -f "$log_dir/$b.log" ] && sed -n '/^PyTorch baseline/p;/^backend=/,/^wrote /p' "$log_dir/$b.log"
done
echo
echo "gpu_check summary ($SECONDS s of a ${budget}s budget; MNIST $mnist; logs in $log_dir)"
[ "$rehearse" = 1 ] && echo "REHEARSAL on the CPU with the stand-in disguised as CuPy: no GPU was used"
printf '%-10s %-9s %6s  %s\n' stage status seconds detail
printf '%-10s %-9s %6s  %s\n' ---------- --------- ------ ------
failed=0
for i in "${!names[@]}"; do
    printf '%-10s %-9s %6s  %s\n' "${names[$i]}" "${statuses[$i]}" "${seconds[$i]}" "${details[$i]}"
    case "${statuses[$i]}" in PASS) ;; *) failed=1 ;; esac
done
if [ "$SECONDS" -gt "$budget" ]; then
    echo "over budget: ${SECONDS}s > ${budget}s"
    failed=1
fi
exit $failed
