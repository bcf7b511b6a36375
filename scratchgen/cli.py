"""The ``scratchgen`` command (also ``python -m scratchgen``)::

    scratchgen train MODEL [--dataset D] [--steps N | --epochs N] [--set key=value ...]
    scratchgen train --resume DIR [--steps N] [--lr LOWER]
    scratchgen eval DIR [--data-dir D]
    scratchgen sample DIR [-n 64] [-o FILE.png|FILE.npy] [--data-dir D]
    scratchgen gradcheck
    scratchgen bench [workloads.py options]
    scratchgen sweep STUDY.toml --out DIR [--workers N | --scheduler ADDR]   (docs/SWEEP.md)

``--backend`` (before or after the subcommand) wins over ``SCRATCHGEN_BACKEND``; the backend
is chosen before the command runs (``scratchgen.backend.use``), and a bad or unavailable one is
one ``error:`` line.

Options and ``--set`` values are checked against their declarations
(:mod:`scratchgen.spec`) before anything is written.

Exit codes: 0 done; 2 a user mistake or an OS-level failure (bad name, path or option, disk
full, read-only, permission, out of memory: one ``error:`` line naming what and what to do,
no traceback; ``SCRATCHGEN_DEBUG=1`` shows the traceback); 3 a non-finite loss or weight
stopped training; 130 / 143 stopped by SIGINT / SIGTERM after saving a checkpoint; 1
``gradcheck`` failures. Ctrl-C at any other moment is one line (exit 130). A closed stdout or
stderr (``scratchgen train ... | head``) silences the output; the command goes on.
"""
import argparse
import errno
import json
import os
import sys
from pathlib import Path

from scratchgen import __version__
from scratchgen.backend import CHOICES as BACKENDS, ENV_VAR


def _kv(text):
    """``key=value`` as (key, value text); the task's declaration parses the value."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set takes key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def _backend_option(p, top=False):
    # On subcommands the default is SUPPRESS, so that an absent option leaves the top-level value.
    p.add_argument("--backend", choices=BACKENDS, default=None if top else argparse.SUPPRESS,
                   help=f"array backend (default: ${ENV_VAR} or cpu)")


def _parser():
    p = argparse.ArgumentParser(
        prog="scratchgen",
        description="Train, evaluate and sample deep generative models (VAE, GAN, WGAN, "
        "WGAN-GP) built on scratchgen's autodiff engine.",
        epilog="Example (about a minute on 2 cores): scratchgen train wgan-gp --dataset "
        "8gaussians --steps 2000 --set width=128")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _backend_option(p, top=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    _train_parser(sub)
    _eval_parser(sub)
    _other_parsers(sub)
    from scratchgen.sweep.command import add_parser as sweep_parser
    _backend_option(sweep_parser(sub))
    return p


def _train_parser(sub):
    t = sub.add_parser(
        "train", help="train a model",
        description="Train a model. The run directory gets config.json, metrics.jsonl, "
        "checkpoints (ckpt-XXXXXXXX.npz) and PNG plots. Ctrl-C finishes the current step, "
        "saves a checkpoint and tells how to resume.")
    t.add_argument("model", nargs="?", help="vae | gan | wgan | wgan-gp (omit with --resume)")
    t.add_argument("--dataset", help="8gaussians | 25gaussians | swissroll | ring | "
                   "checkerboard | mnist | a .npy/.npz file, FILE.npz:KEY for one array of "
                   "several (default: the model's)")
    t.add_argument("--split", choices=("train", "test"), help="MNIST split (default train)")
    t.add_argument("--holdout", metavar="N",
                   help="keep the last N examples of the split out of training and evaluate "
                   "on them (toy data: N fresh held-out samples)")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--steps", metavar="N", help="training steps (default 2000, or the "
                   "model's for the dataset: --list-hyperparameters shows it; with --resume: "
                   "train up to N steps in all)")
    g.add_argument("--epochs", metavar="N", help="passes over the training set")
    t.add_argument("--batch-size", metavar="B", help="examples per batch (default: the model's)")
    t.add_argument("--lr", help="learning rate (default: the model's; with --resume: only "
                   "lower, recorded in config.json's history)")
    t.add_argument("--seed", help="seed of all randomness (default 0)")
    t.add_argument("--out", metavar="DIR", help="run directory: new or empty (default "
                   "runs/MODEL-DATASET-TIME)")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its newest "
                   "intact checkpoint")
    t.add_argument("--data-dir", metavar="DIR", help="folder with the MNIST IDX files "
                   "(default $SCRATCHGEN_DATA/mnist, else ~/.cache/scratchgen/mnist); with "
                   "--resume: where the run's data are now")
    t.add_argument("--set", dest="overrides", type=_kv, action="append", default=[],
                   metavar="KEY=VALUE", help="a model hyperparameter (hidden=[400,400], "
                   "critic_burst=false, ...); repeatable; --list-hyperparameters shows them")
    t.add_argument("--list-hyperparameters", action="store_true",
                   help="print MODEL's hyperparameters (type, default, allowed values) and exit")
    t.add_argument("--log-every", metavar="N",
                   help="steps between metrics.jsonl lines (default steps/200)")
    t.add_argument("--eval-every", metavar="N",
                   help="steps between evaluations and figures (default steps/5)")
    t.add_argument("--ckpt-every", metavar="N",
                   help="steps between checkpoints (default steps/10)")
    t.add_argument("--keep-checkpoints", "--keep", dest="keep", metavar="K",
                   help="checkpoints kept (default 3)")
    _backend_option(t)


def _eval_parser(sub):
    e = sub.add_parser("eval", help="evaluate a run's latest checkpoint",
                       description="Print a run's metrics at its newest intact checkpoint, "
                       "write them to DIR/eval.json and redraw its plots.")
    e.add_argument("run_dir", metavar="DIR")
    e.add_argument("--no-plots", action="store_true", help="skip the plots")
    e.add_argument("--set", dest="overrides", type=_kv, action="append", default=[],
                   metavar="KEY=VALUE", help="an evaluation setting, e.g. iwae_k=1000")
    e.add_argument("--data-dir", metavar="DIR", help="where the run's data are now (MNIST's "
                   "folder, or the folder holding its .npy/.npz file)")
    _backend_option(e)


def _other_parsers(sub):
    s = sub.add_parser("sample", help="draw samples from a trained run",
                       description="Samples from a run's newest intact checkpoint: a picture "
                       "for .png (an image grid, or a scatter plot of 2-D points), the raw "
                       "array for .npy. Samples holding NaN or infinity are refused.")
    s.add_argument("run_dir", metavar="DIR")
    s.add_argument("-n", default="64", help="number of samples (default 64, at most "
                   f"{MAX_SAMPLES:,})")
    s.add_argument("-o", "--output", metavar="FILE", help="FILE.png or FILE.npy, relative to "
                   "the current folder (default DIR/samples-nN-seedS.png)")
    s.add_argument("--seed", default="0", help="seed of the draw (default 0)")
    s.add_argument("--data-dir", metavar="DIR", help="where the run's data are now")
    _backend_option(s)

    gc = sub.add_parser("gradcheck", help="check every primitive's first and second derivatives",
                        description="Run the gradient checker over every primitive (float64, "
                        "central differences) and print max abs/rel errors, first and second "
                        "order. Exit code 1 if any check fails.")
    gc.add_argument("cases", nargs="*", metavar="CASE", help="only these cases")
    gc.add_argument("--seed", type=int, default=0)
    _backend_option(gc)

    b = sub.add_parser("bench", help="run the W1-W5 benchmark table",
                       description="Run benchmarks/workloads.py from the source checkout; "
                       "other options go to it (e.g. --only W1,W3 --steps 20).",
                       epilog="see benchmarks/README.md")
    _backend_option(b)


MAX_SAMPLES = 1_000_000


class _Usage(Exception):
    pass


class _Quiet:
    """A text stream that goes quiet once its reader has gone (``| head``): the file
    descriptor is pointed at ``os.devnull`` instead of the command failing."""

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def write(self, text):
        try:
            return self._stream.write(text)
        except OSError as e:
            self._gone(e)
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except OSError as e:
            self._gone(e)

    def _gone(self, e):
        if e.errno != errno.EPIPE:
            raise e
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, self._stream.fileno())
        finally:
            os.close(null)


def main(argv=None):
    """Entry point; returns the exit code (see the module docstring)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Quiet(sys.stdout), _Quiet(sys.stderr)
    try:
        return _main(argv)
    except KeyboardInterrupt:  # during the imports or argument parsing
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        sys.stdout, sys.stderr = saved


def _main(argv):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    from scratchgen import backend
    try:  # --backend wins over SCRATCHGEN_BACKEND; either way a bad one is one line
        backend.use(args.backend, origin="--backend" if args.backend else None)
    except backend.BackendError as e:
        return _fail(str(e))
    from scratchgen import _interrupt, trainer
    from scratchgen.data import DatasetError
    from scratchgen.io import CheckpointError
    from scratchgen.rundir import RunDirError, os_error_message
    user_errors = (_Usage, RunDirError, DatasetError, CheckpointError, backend.BackendError,
                   ValueError)
    try:
        _interrupt.release()  # a Ctrl-C during the imports above acts now
        return _COMMANDS[args.command](args, argv)
    except trainer.TrainingStopped as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except user_errors as e:
        if os.environ.get("SCRATCHGEN_DEBUG"):
            raise
        return _fail(str(e))
    except OSError as e:
        if os.environ.get("SCRATCHGEN_DEBUG"):
            raise
        return _fail(os_error_message(e))
    except MemoryError:
        if os.environ.get("SCRATCHGEN_DEBUG"):
            raise
        return _fail("out of memory: use a smaller --batch-size, model or sample count (-n)")


def _fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    return 2


def _train(args, argv):
    from scratchgen import trainer
    if args.list_hyperparameters:
        return _list_hyperparameters(args)
    if not args.model and not args.resume:
        from scratchgen.tasks import task_names
        raise _Usage(f"give a MODEL to train ({', '.join(task_names())}) or --resume DIR")
    options = {"dataset": args.dataset, "split": args.split, "holdout": args.holdout,
               "steps": args.steps, "epochs": args.epochs, "batch_size": args.batch_size,
               "lr": args.lr, "seed": args.seed, "data_dir": args.data_dir,
               "log_every": args.log_every, "eval_every": args.eval_every,
               "ckpt_every": args.ckpt_every, "keep_checkpoints": args.keep}
    trainer.run(args.model, resume=args.resume, out=args.out,
                overrides=dict(args.overrides) or None, argv=["scratchgen"] + argv, **options)
    return 0


def _list_hyperparameters(args):
    from scratchgen.tasks import get_task
    if not args.model:
        raise _Usage("--list-hyperparameters needs a MODEL")
    task = get_task(args.model)
    dataset = args.dataset or task.default_dataset
    from scratchgen.data import DATASETS, is_array_path
    if dataset not in DATASETS and not is_array_path(dataset):
        raise _Usage(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)} "
                     "or give a path to a .npy/.npz file")
    print(f"{args.model} hyperparameters on {dataset} (--set KEY=VALUE):")
    print(task.spec.describe(dataset))
    print(f"default --steps on {dataset}: {task.default_steps(dataset)}")
    return 0


def _eval(args, argv):
    from scratchgen.rundir import RunDir
    with RunDir.open(args.run_dir, shared=True):  # refused while the run trains
        return _eval_locked(args)


def _eval_locked(args):
    from scratchgen import trainer
    task, data, config, step = trainer.load_run(args.run_dir, data_dir=args.data_dir)
    if args.overrides:
        task.hp = task.hp.replace(**dict(args.overrides))
    ev = trainer.fetch_scalars(task.evaluate(trainer.step_rng(config.seed, step,
                                                              trainer.STREAMS["eval"])))
    run_dir = Path(args.run_dir)
    _write_atomic(run_dir / "eval.json", lambda f: f.write(
        (json.dumps({"step": step, **ev}, indent=2) + "\n").encode()))
    print(f"{config.model} on {config.dataset} at step {step}:")
    width = max([16] + [len(k) for k in ev])
    for k, v in ev.items():
        print(f"  {k:>{width}s}  {v:.6g}")
    if "fd" in ev:
        print("  fd: Fréchet distance between the digit classifier's features of the samples and "
              "of held-out digits\n  (lower is better; real digits score about fd_floor, the "
              "training digits fd_train); "
              "mnist_score: 10 for confident digits of every class, 1 for one class")
    print(f"written: {run_dir / 'eval.json'}")
    if not args.no_plots:
        for p in trainer.draw_figures(task, run_dir, config.seed, step):
            print(f"plot: {p}")
    return 0


def _write_atomic(path, write):
    from scratchgen.io import atomic_write
    atomic_write(path, write)


def _sample(args, argv):
    from scratchgen.spec import Param
    n = Param("n", int, 64, low=1, high=MAX_SAMPLES).parse(args.n, "-n")
    seed = Param("seed", int, 0, low=0).parse(args.seed, "--seed")
    out = Path(args.output) if args.output else \
        Path(args.run_dir) / f"samples-n{n}-seed{seed}.png"
    if out.suffix.lower() not in (".png", ".npy"):
        raise _Usage(f"-o {out}: unsupported extension {out.suffix or '(none)'!r}; give a .png "
                     "(picture) or .npy (raw samples) file")
    for folder in out.absolute().parents:
        if folder.exists() or folder.is_symlink():
            if not folder.is_dir():
                raise _Usage(f"-o {out}: {folder}: is a file, not a folder; choose another "
                             "path for the samples")
            break
    from scratchgen.rundir import RunDir
    with RunDir.open(args.run_dir, shared=True):  # refused while the run trains
        return _sample_locked(args, out, n, seed)


def _sample_locked(args, out, n, seed):
    import numpy as np
    from scratchgen import trainer
    task, data, config, step = trainer.load_run(args.run_dir, data_dir=args.data_dir)
    x = np.asarray(task.sample(n, np.random.default_rng(seed)))
    if not np.all(np.isfinite(x)):
        raise _Usage(f"{args.run_dir}: the samples of step {step} hold NaN or infinite values "
                     "(the model has diverged); nothing written. Resume from an earlier "
                     "checkpoint with a lower --lr, or start a new run")
    from scratchgen.rundir import os_error_message
    try:
        _write_samples(x, out, f"{config.model} samples (step {step})")
    except OSError as e:
        raise _Usage(os_error_message(e, out)) from None
    print(f"wrote {len(x)} samples to {out}")
    return 0


def _write_samples(x, out, title):
    """A picture (image grid or 2-D scatter) for .png, the raw array for .npy; atomic."""
    import numpy as np
    from scratchgen import plots
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".npy":
        _write_atomic(out, lambda f: np.save(f, x))
    elif x.ndim == 2 and x.shape[1] == 2:
        plots.scatter2d({"samples": x}, out, title=title)
    elif x.ndim == 2:
        side = int(round(x.shape[1] ** 0.5))
        if side * side != x.shape[1]:
            raise _Usage(f"samples of shape {x.shape} are neither 2-D points nor square "
                         "images; write them to a .npy file")
        plots.image_grid(x.reshape(len(x), 1, side, side), out, title=title)
    else:
        plots.image_grid(x, out, title=title)


def _gradcheck(args, argv):
    from scratchgen.cli_gradcheck import run_gradcheck_table
    from scratchgen.gradcases import CASES
    unknown = [c for c in args.cases if c not in CASES]
    if unknown:
        raise _Usage(f"unknown case {unknown[0]!r}; choose from {', '.join(CASES)}")
    rows = run_gradcheck_table(seed=args.seed, names=args.cases or None)
    return 0 if all(r["ok"] for r in rows) else 1


def bench_script():
    """``benchmarks/workloads.py`` of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[1] / "benchmarks" / "workloads.py"


def _bench(args, argv):
    import runpy
    script = bench_script()
    if not script.exists():
        raise _Usage(f"the benchmarks live in a source checkout: expected {script}; run "
                     "scratchgen bench from an editable install (pip install -e .) or run "
                     "python benchmarks/workloads.py there")
    saved = sys.argv
    sys.argv = [str(script)] + [a for a in args.extra if a != "--"]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = saved
    return 0


def _sweep(args, argv):
    from scratchgen.sweep.command import main as sweep_main
    return sweep_main(args)


_COMMANDS = {"train": _train, "eval": _eval, "sample": _sample, "gradcheck": _gradcheck,
             "bench": _bench, "sweep": _sweep}
