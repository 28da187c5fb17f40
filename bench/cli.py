"""``python -m bench``: run the grid (tuned or not), report it, check it against a baseline,
compare experiments, list components, measure performance.

Exit codes: 0 success; 1 a regression (check) or a failed run; 2 bad usage, config or data,
always as one line naming the file, key or value; 130 stopped by Ctrl-C or SIGTERM
(resumable).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

RUN_EXAMPLES = """examples:
  python -m bench run --profile quick                      # whole grid on tiny data, < 3 min
  python -m bench run --schedules all                      # default profile, 30/60/100 epochs
  python -m bench run --schedules seed --budgets 30 --seeds 5
  python -m bench run --schedules plateau,multistep --model gwnet --dataset metr-la --device cuda
  python -m bench run --model examples/alternating.py:AlternatingNet --profile quick
  python -m bench run --model adapter.py:Net --model-option hidden=64 --traceback
  python -m bench run --config METR-LA_alternating.yaml    # a tuning note's own lr/milestones keys
  python -m bench run --schedule-file my_schedules.yaml --schedules all,my_cosine
  python -m bench run --profile default --jobs 2           # two runs at once, threads split
"""

REPORT_EXAMPLES = """examples:
  python -m bench report --experiment quick
  python -m bench report --results results --experiment default --out reports
  python -m bench report --experiment quick --margin 0.01   # judge equivalence within 1 %
"""

PERF_EXAMPLES = """examples:
  python -m bench perf --profile quick
  python -m bench perf --profile default --jobs 2
  python -m bench perf --profile default --seeds 1
  python -m bench perf --models --dataset los-loop --data-dir ../shared/data
  python -m bench perf --levers --profile gpu-synthetic --device cuda --fuse 4,16,32
  python -m bench perf --ray --profile quick
"""

COMPARE_EXAMPLES = """examples:
  python -m bench compare default los-loop                 # writes reports/compare/compare.md
  python -m bench compare quick default --results results --out reports --name quick-vs-default
  python -m bench compare tuned-default tuned-sz-taxi --margin 0.01
"""

CHECK_EXAMPLES = """examples:
  python -m bench check --baseline bench/baselines/quick.csv --experiment quick
  python -m bench check --experiment quick --write-baseline bench/baselines/quick.csv
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Learning-rate schedule benchmark for spatio-temporal traffic forecasting.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="train the grid schedules x budgets x seeds",
                         epilog=RUN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--profile", default="default",
                     help=f"{' | '.join(_profile_names())}, or a profile YAML path "
                          "(default: default)")
    run.add_argument("--schedules", help="'all', a group (seed, ablation) or a comma list")
    run.add_argument("--budgets", help="epoch budgets, e.g. 30,60,100")
    run.add_argument("--seeds", help="N for seeds 0..N-1, or a list/range like 3,7 or 0-4")
    run.add_argument("--model", help="a model name (see 'list'), path/to/file.py:Class or "
                                     "package.module:Class")
    run.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                     help="set one of the model's options, read as YAML (repeatable), e.g. "
                          "--model-option hidden=64")
    run.add_argument("--traceback", action="store_true",
                     help="when the model fails to import, build or run, print the whole "
                          "traceback as well as the one-line error")
    run.add_argument("--dataset", help="dataset name or a path to your own files")
    run.add_argument("--data-dir", help="folder holding <dataset>/ files (default: $STBENCH_DATA "
                                        "or ./data)")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: auto")
    run.add_argument("--batch-size", type=int)
    run.add_argument("--results", default="results", help="results folder (default: results)")
    run.add_argument("--experiment", help="experiment name (default: the profile's name, "
                                          "plus the model's when --model replaces it)")
    run.add_argument("--config", metavar="FILE",
                     help="a note-style YAML (lr, weight_decay, milestones, lr_decay_rate, "
                          "epochs, batch_size) run as given")
    run.add_argument("--schedule-file", action="append", default=[], metavar="FILE",
                     help="YAML file adding schedules (repeatable)")
    run.add_argument("--jobs", type=int,
                     help="runs at once, in worker processes that split the CPU threads "
                          "(default: the profile's)")
    run.add_argument("--fuse", type=int, metavar="K",
                     help="train K runs of equal length at once, stacked with vmap (for GPUs)")
    run.add_argument("--tune", action="store_true",
                     help="tune every schedule with the same search space (the profile's tune "
                          "block, or peak lr 3e-4/1e-3/3e-3 on tuning seeds 1000,1001), then "
                          "evaluate the chosen settings on --seeds")
    run.add_argument("--executor", choices=["local", "ray"], default="local")
    run.add_argument("--address", help="Ray cluster address (with --executor ray)")
    run.add_argument("--shard", metavar="I/N", help="run only the I-th of N slices of the grid")

    rep = sub.add_parser("report", help="write markdown + PNG report of a results folder",
                         epilog=REPORT_EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    rep.add_argument("--results", default="results")
    rep.add_argument("--experiment", default="default")
    rep.add_argument("--out", default="reports", help="reports folder (default: reports)")
    rep.add_argument("--margin", type=float,
                     help="equivalence margin on the MAE ratio, e.g. 0.02 for ±2 %% (default: "
                          "the one the profile declared, recorded in the results folder)")
    rep.add_argument("--reference", help="schedule every other is compared with (default: "
                                         "the profile's, recorded in the results folder)")

    chk = sub.add_parser("check", help="regression gate on final test MAE",
                         epilog=CHECK_EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    chk.add_argument("--results", default="results")
    chk.add_argument("--experiment", default="quick")
    chk.add_argument("--baseline", metavar="FILE", help="committed baseline CSV to compare with")
    chk.add_argument("--tolerance", type=float, default=0.02,
                     help="allowed relative increase of mean final test MAE (default 0.02)")
    chk.add_argument("--write-baseline", metavar="FILE", help="record the current results")

    cmp = sub.add_parser("compare", help="rank schedules across experiments: summary, "
                         "performance profile, a recommendation where the evidence holds",
                         epilog=COMPARE_EXAMPLES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    cmp.add_argument("experiments", nargs="+", metavar="EXP",
                     help="two or more experiment names in --results")
    cmp.add_argument("--results", default="results", help="results folder (default: results)")
    cmp.add_argument("--out", default="reports", help="reports folder (default: reports)")
    cmp.add_argument("--settings", choices=("tuned", "own"), default=None,
                     help="compare each schedule tuned (its chosen setting per budget; the "
                          "default when every experiment was run with --tune) or at its own "
                          "settings (the default otherwise)")
    cmp.add_argument("--margin", type=float,
                     help="equivalence margin on the MAE ratio (default: the one every "
                          "experiment records, else 0.02)")
    cmp.add_argument("--name", default="compare",
                     help="writes <out>/<name>/compare.md and performance_profile.png "
                          "(default: compare)")

    sub.add_parser("list", help="list schedules, models, datasets and profiles")

    perf = sub.add_parser("perf", help="time the grid against the naive reference",
                          epilog=PERF_EXAMPLES,
                          formatter_class=argparse.RawDescriptionHelpFormatter)
    perf.add_argument("--profile", default="quick",
                      help=f"{' | '.join(_profile_names())}, or a profile YAML path "
                           "(default: quick)")
    perf.add_argument("--schedules", default="all")
    perf.add_argument("--seeds", type=int, help="first N seeds (default: the profile's)")
    perf.add_argument("--jobs", type=int, default=2, help="the suite's --jobs (default 2)")
    perf.add_argument("--out", default="reports", help="writes <out>/perf/<profile>.{json,md}")
    perf.add_argument("--ray", action="store_true",
                      help="instead: the profile's grid (one seed) through the local executor "
                           "and through a local Ray instance")
    perf.add_argument("--levers", action="store_true",
                      help="instead: ms per training step of the profile's model under each "
                           "lever (float32, bfloat16, torch.compile, fused) on --device, and "
                           "the step's FLOPs against the measured matmul rate")
    perf.add_argument("--fuse", default="4", help="with --levers: runs stacked, e.g. 4,16")
    perf.add_argument("--models", action="store_true",
                      help="instead: parameters and seconds per epoch of every model")
    perf.add_argument("--dataset", default="synthetic-la",
                      help="with --models (default: synthetic-la, 207 sensors, 7 days)")
    perf.add_argument("--data-dir")
    perf.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    return parser


def _profile_names() -> list[str]:
    """The profiles shipped in ``bench/profiles/`` (read without importing the suite)."""
    return sorted(p.stem for p in (Path(__file__).parent / "profiles").glob("*.yaml"))


def main(argv: list[str] | None = None) -> int:
    """Run a command with stdout and stderr that survive their reader going away (``| head``):
    output is then dropped, the work goes on."""
    from bench.progress import SafeStream

    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeStream.wrap(sys.stdout), SafeStream.wrap(sys.stderr)
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = streams


def check_experiment_name(name: str) -> str:
    """An experiment is a plain folder name inside ``--results``: never a path that leads
    elsewhere."""
    from bench.config import ConfigError

    if (not name.strip() or name in (".", "..") or "/" in name or "\\" in name
            or os.path.isabs(name) or not name.isprintable()
            or len(name.encode("utf-8", "surrogatepass")) > 200):
        from bench.store import short_repr

        raise ConfigError(f"--experiment {short_repr(name)}: not a plain name (at most 200 "
                          "bytes, no path separators, '..' or absolute path; it names a folder "
                          "inside --results)")
    return name


def _main(argv: list[str] | None = None) -> int:
    from bench.config import ConfigError
    from bench.escape import terminal
    from bench.store import StoreError
    from schedules import ScheduleError
    from stforecast.datasets import DataError
    from stforecast.models import ModelError

    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[2:] if argv is None else argv[1:])
    try:
        if getattr(args, "experiment", None) is not None:
            check_experiment_name(args.experiment)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "report":
            from bench.report.command import cmd_report

            return cmd_report(args)
        if args.command == "check":
            from bench.check import cmd_check

            return cmd_check(args)
        if args.command == "compare":
            from bench.compare import cmd_compare

            return cmd_compare(args)
        if args.command == "list":
            return cmd_list()
        if args.command == "perf":
            from bench.perf.command import cmd_perf

            return cmd_perf(args)
    except (ConfigError, DataError, ScheduleError, ModelError) as exc:
        if getattr(args, "traceback", False):
            import traceback

            from stforecast.models.sources import original

            traceback.print_exception(original(exc), file=sys.stderr)
        print(f"error: {terminal(exc, 2000)}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"error: {terminal(exc, 2000)}; results written so far are intact",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nstopped; run the same command again to resume", file=sys.stderr)
        return 130
    return 2


def cmd_run(args) -> int:
    from bench.config import ConfigError
    from bench.driver import check_before_run, run_grid
    from bench.note_config import note_config
    from bench.overrides import apply_overrides, training_command
    from bench.profile import load_profile, profile_path, validate_components
    from bench.selection import budget_notes, resolve_schedules
    from schedules import BUILTIN

    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    if args.shard:
        from bench.plan import shard

        try:
            shard([], args.shard)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    profile = load_profile(args.profile)
    registry = BUILTIN.copy()
    schedules_arg, budgets_arg, batch_arg = args.schedules, args.budgets, args.batch_size
    if args.config:
        name, note = note_config(args.config, registry)
        schedules_arg = schedules_arg or name
        if note.epochs is not None and budgets_arg is None:
            budgets_arg = str(note.epochs)
        if note.batch_size is not None and batch_arg is None:
            batch_arg = note.batch_size
    profile = apply_overrides(profile, schedules=schedules_arg, budgets=budgets_arg,
                              seeds=args.seeds, model=args.model,
                              model_options=args.model_option, dataset=args.dataset,
                              data_dir=args.data_dir, device=args.device, batch_size=batch_arg,
                              jobs=args.jobs, fuse=args.fuse, tune=args.tune)
    where = ("--model-option" if args.model_option else "--model" if args.model
             else str(profile_path(args.profile)))
    profile = validate_components(profile, where)
    schedules = resolve_schedules(profile, args.schedule_file, registry)
    if profile.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device is available here")

    profile_name = profile_path(args.profile).stem
    experiment = args.experiment or default_experiment(profile_name, args.model,
                                                       load_profile(args.profile).model.name)
    exp_dir = Path(args.results) / experiment
    command = training_command(args, experiment)
    for note in budget_notes(schedules, profile.budgets):
        print(f"note: {note}", file=sys.stderr)
    checked = check_before_run(profile, schedules, sys.stderr)  # before any folder exists
    at_once = (f"{profile.jobs} runs at a time in worker processes" if profile.jobs > 1
               else "one run at a time")
    print(f"experiment '{experiment}': {len(schedules)} schedules x budgets "
          f"{list(profile.budgets)} x seeds {list(profile.seeds)}, model {profile.model.name} "
          f"({checked.parameters:,} parameters), dataset {profile.dataset.name}; {at_once}, "
          f"{profile.threads_per_run()} thread(s) each -> {exp_dir}/", file=sys.stderr)
    if profile.tune is not None:
        from bench.tuning import run_tuned

        if args.shard:
            raise ConfigError("--shard cannot split a tuned grid: the settings are chosen "
                              "after every tuning run has finished; use --executor ray to "
                              "spread it over a cluster")
        code = run_tuned(profile, schedules, exp_dir, stream=sys.stderr, checked=checked,
                         executor=args.executor, address=args.address, command=command)
    else:
        code = run_grid(profile, schedules, exp_dir, executor=args.executor,
                        address=args.address, shard_spec=args.shard, checked=checked,
                        command=command)
    _record_report_settings(exp_dir, profile, profile_name)  # once the folder is accepted
    return code


def _record_report_settings(exp_dir: Path, profile, profile_name: str) -> None:
    """The profile's report settings into the experiment folder (``report.json``)."""
    from bench.report.settings import record_judging

    note = record_judging(exp_dir, profile.report.reference, profile.report.margin,
                          profile_name)
    if note:
        print(f"note: {note}", file=sys.stderr)


def default_experiment(profile_name: str, model: str | None, profile_model: str) -> str:
    """The profile's name, plus the model's when ``--model`` replaces the profile's own, so
    that another model's runs get their own folder (an experiment holds one model)."""
    if model is None or model == profile_model:
        return profile_name
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", model.rpartition(":")[2] or model).strip("-.")
    return f"{profile_name}-{slug or 'model'}"


def cmd_list() -> int:
    from bench.profile import load_profile, profile_names
    from schedules import BUILTIN, KINDS
    from stforecast.datasets import dataset_names, get_dataset
    from stforecast.models import get_model, model_names
    from stforecast.models.plugins import ENTRY_POINT_GROUP, entry_points

    print("schedules (python -m bench run --schedules NAME[,NAME...]):")
    width = max(len(n) for n in BUILTIN.names())
    for item in BUILTIN:
        print(f"  {item.name:<{width}}  {item.summary}")
        print(f"  {'':<{width}}    [{item.spec.kind}] {item.spec.hyperparameters()}")
    print("schedule groups:")
    for group, names in BUILTIN.groups().items():
        print(f"  {group:<{width}}  {', '.join(names)}")
    print(f"schedule kinds for --schedule-file: {', '.join(KINDS)}")
    print("models (--model NAME, path/to/file.py:Class or package.module:Class):")
    for name in model_names():
        print(f"  {name:<{width}}  {get_model(name).summary}")
    plugged = entry_points()
    print(f"plugged-in models (entry points '{ENTRY_POINT_GROUP}' of installed packages): "
          + ("none" if not plugged else ""))
    for name, ep in sorted(plugged.items()):
        dist = getattr(ep.dist, "name", None) or "?"
        print(f"  {name:<{width}}  {ep.value} (from {dist})")
    print("datasets (--dataset NAME, or a path to your own files):")
    for name in dataset_names():
        entry = get_dataset(name)
        files = f" [needs {', '.join(entry.files)} in <data-dir>/{name}/]" if entry.files else ""
        print(f"  {name:<{width}}  {entry.summary}{files}")
    print("profiles (--profile):")
    for name in profile_names():
        print(f"  {name:<{width}}  {load_profile(name).description}")
    return 0
