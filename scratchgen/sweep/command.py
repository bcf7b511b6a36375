"""``scratchgen sweep``: the command and :func:`run_study`, which it calls."""
import signal
import sys
from pathlib import Path

from scratchgen.sweep import engine, report, store
from scratchgen.sweep.study import Study, StudyError, load_study


def add_parser(sub):
    s = sub.add_parser(
        "sweep", help="train a study (settings x seeds) here or on a Dask cluster",
        description="Train every run of a study file: each grid point of its [grid] settings "
        "for each of its seeds, as ordinary scratchgen train run directories in "
        "DIR/runs/<name>, on a Dask cluster (default: a local one, one worker per core). "
        "Writes DIR/summary.csv, summary.md, curves.png and final.png. Started again with "
        "the same study and --out, it skips finished runs and resumes the others from their "
        "checkpoints. Needs Dask: " + engine.INSTALL,
        epilog="Exit codes: 0 every run finished; 1 some runs failed (recorded in the "
        "summary); 2 a bad study file, option or --out, an unreachable scheduler or no Dask; "
        "130 interrupted (runs stopped at a checkpoint). See docs/SWEEP.md.")
    s.add_argument("study", nargs="?", metavar="STUDY.toml", help="the study file")
    s.add_argument("--out", metavar="DIR", help="the study's folder: new or empty, or this "
                   "study's folder to resume it")
    s.add_argument("--workers", metavar="N", help="worker processes of the local cluster "
                   "(default: one per core)")
    s.add_argument("--scheduler", metavar="ADDR", help="an existing Dask scheduler "
                   "(tcp://HOST:PORT) instead of a local cluster; DIR must be on a file "
                   "system its workers share")
    s.add_argument("--retry-failed", action="store_true",
                   help="run the runs that failed before again (default: keep their errors)")
    s.add_argument("--status", metavar="DIR", help="list the runs of the study in DIR by "
                   "state, and exit")
    return s


def main(args):
    """The ``sweep`` subcommand; returns the exit code."""
    if args.status:
        if args.study or args.out:
            raise StudyError("--status DIR takes no STUDY.toml or --out")
        store.status(args.status)
        return 0
    if not args.study:
        raise StudyError("give a STUDY.toml (see docs/SWEEP.md), or --status DIR")
    if not args.out:
        raise StudyError(f"give --out DIR: the folder for the study's runs (new, or the "
                         f"folder of this study to resume it)")
    workers = None
    if args.workers is not None:
        from scratchgen.spec import Param
        workers = Param("workers", int, None, low=1).parse(args.workers, "--workers")
        if args.scheduler:
            raise StudyError("--workers sizes the local cluster; with --scheduler the "
                             "cluster's own workers run the study")
    outcome = run_study(args.study, args.out, workers=workers, scheduler=args.scheduler,
                        retry_failed=args.retry_failed, backend=getattr(args, "backend", None))
    if outcome is None:
        return 130
    results, md, paths = outcome
    print(md)
    print("written: " + ", ".join(str(p) for p in paths))
    return 0 if all(r["state"] == "finished" for r in results) else 1


def run_study(study, out, workers=None, scheduler=None, retry_failed=False, backend=None,
              progress=None, on_poll=None, poll=1.0, out_stream=None):
    """Run ``study`` (a path or a :class:`Study`) into ``out``; returns (one result per run:
    ``store`` results of this session or of earlier ones, the Markdown summary, the files
    written), or None when interrupted (the runs stopped at a checkpoint; start it again to
    continue). ``progress``: a bar (True), plain lines (False) or a bar on a terminal (None);
    ``on_poll(client, futures)``: called every ``poll`` seconds while runs are going."""
    say = (lambda *a: print(*a, file=out_stream or sys.stdout, flush=True))
    path = study if isinstance(study, Study) else None
    source_text = ""
    if path is None:
        source_text = Path(study).read_text() if Path(study).is_file() else ""
        study = load_study(study)
    engine.require_dask()
    store.StudyDir.check(out, study)
    client, cluster, threads = engine.connect(scheduler, workers)
    saved = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread
        saved = None
    try:
        with store.StudyDir.open(out, study, source_text) as sd:
            states = {r.name: sd.state(r.name)[0] for r in study.runs}
            again = ("pending", "stopped", "running") + (("failed",) if retry_failed else ())
            todo = [r for r in study.runs if states[r.name] in again]
            done = sum(s == "finished" for s in states.values())
            where = (f"the Dask scheduler at {scheduler}" if scheduler else
                     f"a local cluster of {len(cluster.workers)} worker(s), {threads} "
                     "thread(s) per run")
            say(f"study {study.source}: {len(study.runs)} runs, {done} finished, "
                f"{len(todo)} to run on {where}; folder {sd.path}")
            jobs = [{"name": r.name, "run_dir": str(sd.run_dir(r.name)), "argv": r.argv,
                     "log": str(sd.log(r.name)), "threads": threads, "backend": backend}
                    for r in todo]
            bar = engine.Progress(len(study.runs), done, progress)
            try:
                engine.run_jobs(client, jobs, sd, bar, poll=poll, on_poll=on_poll)
            except KeyboardInterrupt:
                bar.close()
                by = {s: 0 for s in store.STATES}
                for r in study.runs:
                    by[sd.state(r.name)[0]] += 1
                print(f"interrupted: {by['finished']} of {len(study.runs)} runs finished, "
                      f"{by['stopped'] + by['running']} stopped at a checkpoint; continue with: "
                      f"scratchgen sweep {study.source} --out {sd.path}", file=sys.stderr)
                return None
            finally:
                bar.close()
            results = []
            for r in study.runs:
                state, detail = sd.state(r.name)
                results.append({"name": r.name, **detail, "state": state})
            failed = [r for r in results if r["state"] != "finished"]
            paths, md = report.write(study, sd, failed)
            return results, md, paths
    finally:
        if saved is not None:
            signal.signal(signal.SIGTERM, saved)
        client.close()
        if cluster is not None:
            cluster.close()


def _interrupt(signum, frame):
    raise KeyboardInterrupt
