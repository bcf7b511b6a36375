"""The ``scratchgen`` command (also ``python -m scratchgen``)::

    scratchgen train MODEL [--dataset D] [--steps N | --epochs N] [--set key=value ...]
    scratchgen train --resume DIR [--steps N]
    scratchgen eval DIR
    scratchgen sample DIR -n 64 -o FILE.png|FILE.npy
    scratchgen gradcheck
    scratchgen bench [workloads.py options]

``--backend`` (before or after the subcommand) wins over ``SCRATCHGEN_BACKEND``; the backend
is chosen before the command runs (``scratchgen.backend.use``), and a bad or unavailable one is
one ``error:`` line.

Exit codes: 0 done; 2 a user mistake (bad name, path or option: one ``error:`` line, no
traceback; ``SCRATCHGEN_DEBUG=1`` shows the traceback); 3 a non-finite loss stopped training;
130 / 143 stopped by SIGINT / SIGTERM after saving a checkpoint; 1 ``gradcheck`` failures.
"""
import argparse
import json
import os
import sys
from pathlib import Path

from scratchgen.backend import CHOICES as BACKENDS, ENV_VAR


def _kv(text):
    """``key=value`` with a JSON value (``lr=1e-3``, ``hidden=[400,400]``), else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set takes key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _backend_option(p, top=False):
    # On subcommands the default is SUPPRESS, so that an absent option leaves the top-level value.
    p.add_argument("--backend", choices=BACKENDS, default=None if top else argparse.SUPPRESS,
                   help=f"array backend (default: ${ENV_VAR} or cpu)")


def _parser():
    p = argparse.ArgumentParser(
        prog="scratchgen",
        description="Train, evaluate and sample deep generative models (VAE, GAN, WGAN, "
        "WGAN-GP) built on scratchgen's autodiff engine.",
        epilog="Example: scratchgen train wgan-gp --dataset 8gaussians --steps 2000")
    _backend_option(p, top=True)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser(
        "train", help="train a model",
        description="Train a model. The run directory gets config.json, metrics.jsonl, "
        "checkpoints (ckpt-XXXXXXXX.npz) and PNG plots. Ctrl-C finishes the current step, "
        "saves a checkpoint and tells how to resume.")
    t.add_argument("model", nargs="?", help="vae | gan | wgan | wgan-gp (omit with --resume)")
    t.add_argument("--dataset", help="8gaussians | 25gaussians | swissroll | ring | "
                   "checkerboard | mnist | a .npy/.npz file (default: the model's)")
    t.add_argument("--split", choices=("train", "test"), help="MNIST split (default train)")
    t.add_argument("--holdout", type=int, metavar="N",
                   help="keep the last N examples of the split out of training and evaluate "
                   "on them (toy data: N fresh held-out samples)")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, metavar="N", help="training steps (default 2000; "
                   "with --resume: train up to N steps in all)")
    g.add_argument("--epochs", type=int, metavar="N", help="passes over the training set")
    t.add_argument("--batch-size", type=int, metavar="B")
    t.add_argument("--lr", type=float, help="learning rate")
    t.add_argument("--seed", type=int, help="seed of all randomness (default 0)")
    t.add_argument("--out", metavar="DIR", help="run directory (default runs/MODEL-DATASET-TIME)")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its latest "
                   "checkpoint")
    t.add_argument("--data-dir", metavar="DIR", help="folder with the MNIST IDX files "
                   "(default $SCRATCHGEN_DATA/mnist, else ~/.cache/scratchgen/mnist)")
    t.add_argument("--set", dest="overrides", type=_kv, action="append", default=[],
                   metavar="KEY=VALUE", help="a model hyperparameter (JSON value); repeatable")
    t.add_argument("--log-every", type=int, metavar="N",
                   help="steps between metrics.jsonl lines (default steps/200)")
    t.add_argument("--eval-every", type=int, metavar="N",
                   help="steps between evaluations (default steps/5)")
    t.add_argument("--ckpt-every", type=int, metavar="N",
                   help="steps between checkpoints (default steps/10)")
    t.add_argument("--keep-checkpoints", "--keep", dest="keep", type=int, metavar="K",
                   help="checkpoints kept (default 3)")
    _backend_option(t)

    e = sub.add_parser("eval", help="evaluate a run's latest checkpoint",
                       description="Print a run's metrics at its latest checkpoint, write them "
                       "to DIR/eval.json and redraw its plots.")
    e.add_argument("run_dir", metavar="DIR")
    e.add_argument("--no-plots", action="store_true", help="skip the plots")
    e.add_argument("--set", dest="overrides", type=_kv, action="append", default=[],
                   metavar="KEY=VALUE", help="an evaluation setting, e.g. iwae_k=1000")
    _backend_option(e)

    s = sub.add_parser("sample", help="draw samples from a trained run",
                       description="Samples from a run's latest checkpoint: a picture for "
                       ".png (an image grid, or a scatter plot of 2-D points), the raw array "
                       "for .npy.")
    s.add_argument("run_dir", metavar="DIR")
    s.add_argument("-n", type=int, default=64, help="number of samples (default 64)")
    s.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.png or FILE.npy")
    s.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
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
    return p


class _Usage(Exception):
    pass


def _fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    return 2


def main(argv=None):
    """Entry point; returns the exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "bench":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    from scratchgen import backend, trainer
    from scratchgen.data import DatasetError
    from scratchgen.io import CheckpointError
    try:  # --backend wins over SCRATCHGEN_BACKEND; either way a bad one is one line
        backend.use(args.backend, origin="--backend" if args.backend else None)
    except backend.BackendError as e:
        return _fail(str(e))
    BackendError = backend.BackendError
    user_errors = (_Usage, trainer.UsageError, DatasetError, CheckpointError, FileNotFoundError,
                   NotADirectoryError, IsADirectoryError, PermissionError, BackendError,
                   ValueError)
    try:
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


def _train(args, argv):
    from scratchgen import trainer
    if args.resume:
        if args.model:
            raise _Usage(f"give either MODEL or --resume DIR, not both (the run in "
                         f"{args.resume} knows its model)")
        fixed = {"--dataset": args.dataset, "--split": args.split, "--holdout": args.holdout,
                 "--batch-size": args.batch_size, "--lr": args.lr, "--seed": args.seed,
                 "--out": args.out, "--set": args.overrides or None}
        given = [k for k, v in fixed.items() if v is not None]
        if given:
            raise _Usage(f"{', '.join(given)} cannot change when resuming (the run's settings "
                         f"are in {Path(args.resume) / 'config.json'}); start a new run with "
                         "--out instead")
        trainer.run(resume=args.resume, steps=args.steps, epochs=args.epochs,
                    data_dir=args.data_dir, log_every=args.log_every,
                    eval_every=args.eval_every, ckpt_every=args.ckpt_every,
                    keep_checkpoints=args.keep)
        return 0
    if not args.model:
        from scratchgen.tasks import task_names
        raise _Usage(f"give a MODEL to train ({', '.join(task_names())}) or --resume DIR")
    trainer.run(args.model, dataset=args.dataset, split=args.split or "train",
                holdout=args.holdout or 0, steps=args.steps, epochs=args.epochs,
                batch_size=args.batch_size, lr=args.lr,
                seed=0 if args.seed is None else args.seed, out=args.out,
                data_dir=args.data_dir, overrides=dict(args.overrides),
                log_every=args.log_every, eval_every=args.eval_every,
                ckpt_every=args.ckpt_every, keep_checkpoints=args.keep,
                argv=["scratchgen"] + argv)
    return 0


def _eval(args, argv):
    from scratchgen import trainer
    task, data, config, step = trainer.load_run(args.run_dir)
    for k, v in args.overrides:
        if k not in task.config:
            raise _Usage(f"{config['model']} has no setting {k!r}; its keys are "
                         f"{', '.join(sorted(task.config))}")
        task.config[k] = v
    ev = task.evaluate(trainer.step_rng(config["seed"], step, trainer.STREAMS["eval"]))
    out = Path(args.run_dir) / "eval.json"
    trainer._write_json(out, {"step": step, **ev})
    print(f"{config['model']} on {config['dataset']} at step {step}:")
    for k, v in ev.items():
        print(f"  {k:>16s}  {v:.6g}")
    print(f"written: {out}")
    if not args.no_plots:
        for p in trainer.finish_plots(task, args.run_dir, config["seed"], step):
            print(f"plot: {p}")
    return 0


def _sample(args, argv):
    import numpy as np
    from scratchgen import plots, trainer
    out = Path(args.output)
    if out.suffix.lower() not in (".png", ".npy"):
        raise _Usage(f"-o {out}: unsupported extension {out.suffix or '(none)'!r}; give a .png "
                     "(picture) or .npy (raw samples) file")
    if args.n < 1:
        raise _Usage(f"-n must be positive, got {args.n}")
    task, data, config, step = trainer.load_run(args.run_dir)
    x = np.asarray(task.sample(args.n, np.random.default_rng(args.seed)))
    out.parent.mkdir(parents=True, exist_ok=True)
    title = f"{config['model']} samples (step {step})"
    if out.suffix.lower() == ".npy":
        np.save(out, x)
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
    print(f"wrote {len(x)} samples to {out}")
    return 0


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


_COMMANDS = {"train": _train, "eval": _eval, "sample": _sample, "gradcheck": _gradcheck,
             "bench": _bench}
