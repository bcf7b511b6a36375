"""The ``scratchgen`` command (also ``python -m scratchgen``).

The engine is imported only after ``--backend`` has set ``SCRATCHGEN_BACKEND``, because the
backend is read once, at import.
"""
import argparse
import json
import os
import sys
from pathlib import Path

BACKENDS = ("cpu", "numpy", "cuda")


def _kv(text):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set takes key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _parser():
    p = argparse.ArgumentParser(
        prog="scratchgen", description="Train, evaluate and sample deep generative models.")
    p.add_argument("--backend", choices=BACKENDS,
                   help="array backend (default: $SCRATCHGEN_BACKEND or cpu)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    t = sub.add_parser("train", help="train a model (vae, gan, wgan, wgan-gp)",
                       description="Train a model; the run directory gets config.json, "
                       "metrics.jsonl, checkpoints and plots.")
    t.add_argument("model", nargs="?", help="vae | gan | wgan | wgan-gp (not with --resume)")
    t.add_argument("--dataset", help="8gaussians | 25gaussians | swissroll | ring | "
                   "checkerboard | mnist | a .npy/.npz file")
    t.add_argument("--split", choices=("train", "test"), default="train", help="MNIST split")
    t.add_argument("--holdout", type=int, default=0,
                   help="keep the last N examples of the split out of training; evaluate on them")
    g = t.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, help="training steps (default 2000)")
    g.add_argument("--epochs", type=int, help="passes over the training set")
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", help="run directory (default runs/MODEL-DATASET-TIME)")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its latest "
                   "checkpoint (with --steps: up to that many steps)")
    t.add_argument("--data-dir", help="folder with the MNIST IDX files "
                   "(default $SCRATCHGEN_DATA/mnist or ~/.cache/scratchgen/mnist)")
    t.add_argument("--set", dest="overrides", type=_kv, action="append", default=[],
                   metavar="KEY=VALUE", help="a model hyperparameter (JSON value), repeatable")
    t.add_argument("--eval-every", type=int)
    t.add_argument("--ckpt-every", type=int)
    t.add_argument("--keep", type=int, default=3, help="checkpoints to keep")
    t.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)

    e = sub.add_parser("eval", help="evaluate a run's latest checkpoint",
                       description="Print a run's metrics at its latest checkpoint, write them "
                       "to DIR/eval.json and redraw its plots.")
    e.add_argument("run_dir", metavar="DIR")
    e.add_argument("--no-plots", action="store_true")
    e.add_argument("--set", dest="overrides", type=_kv, action="append", default=[],
                   metavar="KEY=VALUE", help="evaluation settings, e.g. iwae_k=1000")
    e.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)

    s = sub.add_parser("sample", help="draw samples from a trained run",
                       description="Samples from a run's latest checkpoint: a picture for "
                       ".png, the raw array for .npy.")
    s.add_argument("run_dir", metavar="DIR")
    s.add_argument("-n", type=int, default=64, help="number of samples")
    s.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.png or FILE.npy")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)

    gc = sub.add_parser("gradcheck", help="check every primitive's first and second derivatives",
                        description="Run the gradient checker over every primitive and print "
                        "max abs/rel errors, first and second order.")
    gc.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)

    b = sub.add_parser("bench", help="run the W1-W5 benchmark table",
                       description="Run benchmarks/workloads.py (from a source checkout); "
                       "arguments after -- go to it.")
    b.add_argument("args", nargs=argparse.REMAINDER)
    b.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)
    return p


def _fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    return 2


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    if args.backend:
        os.environ["SCRATCHGEN_BACKEND"] = args.backend
    try:
        from scratchgen.backend import BackendError
    except Exception as e:  # the backend could not start: say why, no traceback
        return _fail(str(e))
    from scratchgen import trainer
    from scratchgen.data import DatasetError
    from scratchgen.io import CheckpointError
    user_errors = (trainer.UsageError, DatasetError, CheckpointError, FileNotFoundError,
                   BackendError)
    try:
        return _COMMANDS[args.command](args, argv)
    except trainer.TrainingStopped as e:
        print(str(e), file=sys.stderr)
        return e.exit_code
    except user_errors as e:
        return _fail(str(e))
    except ValueError as e:  # bad names reported by tasks/models (they list the choices)
        return _fail(str(e))


def _train(args, argv):
    from scratchgen import trainer
    if args.resume and args.model:
        raise trainer.UsageError("give either MODEL or --resume DIR, not both")
    if not args.resume and not args.model:
        raise trainer.UsageError("give a MODEL to train (vae, gan, wgan, wgan-gp) or --resume")
    trainer.run(args.model, dataset=args.dataset, split=args.split, holdout=args.holdout,
                steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                seed=args.seed, out=args.out, resume=args.resume, data_dir=args.data_dir,
                overrides=dict(args.overrides), eval_every=args.eval_every,
                ckpt_every=args.ckpt_every, keep_checkpoints=args.keep, argv=["train"] + argv)
    return 0


def _eval(args, argv):
    from scratchgen import trainer
    task, data, config, step = trainer.load_run(args.run_dir)
    for k, v in args.overrides:
        if k not in task.config:
            raise trainer.UsageError(f"{config['model']} has no setting {k!r}; its keys are "
                                     f"{', '.join(sorted(task.config))}")
        task.config[k] = v
    ev = task.evaluate(trainer.step_rng(config["seed"], step, 2))
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
    if out.suffix not in (".png", ".npy"):
        raise trainer.UsageError(f"-o {out}: give a .png (picture) or .npy (raw samples) file")
    if args.n < 1:
        raise trainer.UsageError(f"-n must be positive, got {args.n}")
    task, data, config, step = trainer.load_run(args.run_dir)
    x = task.sample(args.n, np.random.default_rng(args.seed))
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, x)
    elif x.ndim == 2 and x.shape[1] == 2:
        plots.scatter2d({"samples": x}, out, title=f"{config['model']} samples (step {step})")
    elif x.ndim == 2:
        side = int(round(x.shape[1] ** 0.5))
        if side * side != x.shape[1]:
            raise trainer.UsageError(f"samples of shape {x.shape} are neither 2-D points nor "
                                     "square images; use a .npy output")
        plots.image_grid(x.reshape(len(x), 1, side, side), out)
    else:
        plots.image_grid(x, out, title=f"{config['model']} samples (step {step})")
    print(f"wrote {len(x)} samples to {out}")
    return 0


def _gradcheck(args, argv):
    from scratchgen.cli_gradcheck import run_gradcheck_table
    rows = run_gradcheck_table()
    return 0 if all(r["ok"] for r in rows) else 1


def _bench(args, argv):
    import runpy
    here = Path(__file__).resolve().parents[1] / "benchmarks" / "workloads.py"
    if not here.exists():
        from scratchgen import trainer
        raise trainer.UsageError(f"the benchmarks live in a source checkout: {here} not found")
    extra = [a for a in args.args if a != "--"]
    sys.argv = [str(here)] + extra
    runpy.run_path(str(here), run_name="__main__")
    return 0


_COMMANDS = {"train": _train, "eval": _eval, "sample": _sample, "gradcheck": _gradcheck,
             "bench": _bench}
