"""Reading an experiment folder back into tables for the report and the regression check,
and the lookups every report section uses (per-seed values, mean curves, baselines, ranks).

The folder is untrusted input (``bench.safe_files``): every record is checked for the types
the report uses; ``baselines.csv`` is used only when it names the experiment's data and
matches the checksum ``experiment.json`` records for it; ``tuning.json`` only when it matches
the experiment's own tuned grid and records; the environment is read from a verified run.
What is left out is said in a note."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import ConfigError
from bench.escape import visible
from bench.safe_files import check_name, read_bytes, read_json, reason_of
from bench.store import RunDir, parse_json, sha256_bytes
from bench.tables import read_grid, rebuild_tables, stale

BASELINE_LABELS = {"historical_average": "historical average", "persistence": "persistence"}


@dataclass
class Results:
    """Everything a report is made from; ``epochs``/``summary`` follow the results contract."""

    name: str
    epochs: pd.DataFrame
    summary: pd.DataFrame
    baselines: pd.DataFrame
    schedules: dict[str, dict]               # name -> info recorded in grid.json
    order: list[str] = field(default_factory=list)  # registration order of the schedules
    experiment: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    run_config: dict = field(default_factory=dict)
    # The tuning protocol's record (``tuning.json``), when the experiment was tuned; then
    # ``epochs`` and ``summary`` hold the evaluation seeds only, and ``tuning_runs`` the
    # summary rows of the tuning seeds (read for the time they cost, never for a verdict).
    tuning: dict = field(default_factory=dict)
    tuning_runs: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def budgets(self) -> list[int]:
        return sorted(int(b) for b in self.summary["budget"].unique())

    @property
    def variants(self) -> set[str]:
        """Tuning points that are not a schedule's own settings (``plateau@lr0.003``)."""
        return set(self.tuning.get("settings", {})) - set(self.tuning.get("schedules", {}))

    @property
    def schedule_order(self) -> list[str]:
        """Schedules in the order they were registered, restricted to those present; tuning
        points appear only in the tuned section."""
        present = set(self.summary["schedule"]) - self.variants
        return [s for s in self.order if s in present]

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.summary["seed"].unique())

    def finished(self) -> pd.DataFrame:
        return self.summary[self.summary["status"] == "finished"]


def _read_csv(data: bytes, path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(io.BytesIO(data))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({str(exc)[:200]})") from None


_TEXT_COLUMNS = {"schedule", "status", "run"}


def _parse_table(text: str, path: Path) -> pd.DataFrame:
    """A derived table from its text; every column but the named text ones numeric."""
    try:
        df = pd.read_csv(io.StringIO(text))
    except ValueError as exc:
        raise ConfigError(f"{path}: unreadable ({exc})") from None
    for column in df.columns:
        if column in _TEXT_COLUMNS:
            continue
        try:
            df[column] = pd.to_numeric(df[column])
        except (TypeError, ValueError):
            raise ConfigError(f"{path}: column {column!r} holds a value that is not a "
                              "number") from None
    return df


def load_results(exp_dir: str | Path, notes: list[str] | None = None) -> Results:
    """An experiment folder read back. ``epochs.csv`` and ``summary.csv`` are derived, so
    they are rebuilt from the run folders first (``bench.tables.rebuild_tables``: verified
    records only); what that found (damaged runs, tables that did not match) is appended to
    ``notes``."""
    from bench.prepare import check_experiment_folder

    exp_dir = Path(exp_dir)
    check_experiment_folder(exp_dir)
    if not exp_dir.is_dir():
        raise ConfigError(f"{exp_dir}: no such experiment folder (see --results/--experiment)")
    notes = notes if notes is not None else []
    epochs_text, summary_text, found = rebuild_tables(exp_dir)
    notes.extend(found)
    summary = _parse_table(summary_text, exp_dir / "summary.csv")
    epochs = _parse_table(epochs_text, exp_dir / "epochs.csv")
    if summary.empty:
        raise ConfigError(f"{exp_dir / 'summary.csv'}: holds no runs")
    grid = read_grid(exp_dir)
    experiment = {}
    path = exp_dir / "experiment.json"
    try:
        experiment = read_json(path, "experiment", exp_dir)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({reason_of(exc)})") from None
    if not _experiment_ok(experiment):
        raise ConfigError(f"{path}: not an experiment record; run 'python -m bench run' "
                          "again to rewrite it")
    baselines = read_baselines(exp_dir, experiment, notes)
    run_config = verified_run_config(exp_dir, summary)
    environment = run_config.get("environment", {})
    if not isinstance(environment, dict):
        environment = {}
    schedules = {name: _schedule_info(info, grid_path=exp_dir / "grid.json", name=name)
                 for name, info in grid.get("schedules", {}).items()}
    order = grid.get("order") or sorted(schedules)
    tuning = read_tuning(exp_dir, notes)
    if tuning:
        why = tuning_problem(tuning, grid, summary)
        if why is not None:
            notes.append(f"{exp_dir / 'tuning.json'}: {why}; not used (the experiment is "
                         "reported as untuned)")
            tuning = {}
    tuning_runs = summary.iloc[0:0]
    if tuning:  # the test comparison uses the evaluation seeds alone
        tuning_runs = summary[summary["seed"].isin(tuning["tuning_seeds"])
                              & ~summary["seed"].isin(tuning["eval_seeds"])]
        summary = summary[summary["seed"].isin(tuning["eval_seeds"])]
        epochs = epochs[epochs["seed"].isin(tuning["eval_seeds"])]
        if summary.empty:
            raise ConfigError(f"{exp_dir / 'summary.csv'}: holds no run of the evaluation "
                              f"seeds {tuning['eval_seeds']} yet")
    return Results(exp_dir.name, epochs, summary, baselines, schedules, order, experiment,
                   environment, run_config, tuning, tuning_runs)


def verified_run_config(exp_dir: Path, summary: pd.DataFrame) -> dict:
    """The ``config.json`` of the first run (in path order) that verifies: vouched for by its
    status, describing the run its folder names and trained as the experiment records. The
    report's environment and parameter count come from it, never from an unverified file."""
    from bench.tables import _identity

    identity = _identity(exp_dir)
    present = summary[summary["status"] != "missing"] if "status" in summary else summary
    keys = sorted({str(k) for k in present.get("run", [])}, key=lambda k: tuple(k.split("/")))
    for key in keys:
        run = RunDir(exp_dir / "runs" / key, base=exp_dir)
        try:
            status = run.read_status()
            data = run.read_optional("config.json")
        except ValueError:
            continue
        if status is None or data is None or \
                sha256_bytes(data) not in run.vouched_by(status, "config.json") or \
                stale(run, status, identity) is not None:
            continue
        try:
            doc = parse_json(data, run.config)
        except ValueError:
            continue
        if isinstance(doc, dict):
            return doc
    return {}


def _schedule_info(info: dict, grid_path: Path, name: str) -> dict:
    """A schedule's entry of ``grid.json`` with the types the report uses (absent keys get
    neutral values); ``ConfigError`` for a wrong type."""
    out = {"summary": "", "hyperparameters": "", "optimizer": "–", "step_unit": "epoch",
           "needs_metric": False, **info}
    spec = out.get("spec", {"kind": "?"})
    ok = (isinstance(spec, dict) and isinstance(spec.get("kind", "?"), str)
          and all(isinstance(out[k], str) for k in ("summary", "hyperparameters", "optimizer",
                                                    "step_unit"))
          and isinstance(out["needs_metric"], bool))
    if not ok:
        raise ConfigError(f"{grid_path}: schedule '{name}': malformed entry (summary, "
                          "hyperparameters, optimizer and step_unit must be text, spec a "
                          "mapping with a kind)")
    out["spec"] = {"kind": "?", **spec}
    return out


def _experiment_ok(record) -> bool:
    """Whether ``experiment.json`` has the types the report uses."""
    if not isinstance(record, dict) or not _facts_ok(record.get("data", {})):
        return False
    parts = {k: record.get(k, {}) for k in ("dataset", "model", "train")}
    if not all(isinstance(v, dict) for v in parts.values()):
        return False
    ds, model = parts["dataset"], parts["model"]
    number = (int, float)
    params = record.get("parameters")
    return ((params is None or (isinstance(params, int) and not isinstance(params, bool)
                                and params >= 0))
            and all(isinstance(ds.get(k, 0.5), number) and not isinstance(ds.get(k), bool)
                    for k in ("train_fraction", "val_fraction"))
            and all(isinstance(ds.get(k, {}), dict) for k in ("options", "content"))
            and isinstance(model.get("options", {}), dict)
            and all(isinstance(model.get(k, ""), str) for k in ("name", "import_path",
                                                                  "origin", "source_sha256")))


def read_baselines(exp_dir: Path, experiment: dict, notes: list[str]) -> pd.DataFrame:
    """``baselines.csv`` when it verifies: computed on the experiment's data (``data_sha256``)
    and matching the checksum ``experiment.json`` records for it, if any. Otherwise a note,
    and no baselines: an edited file never changes the report's verdict silently."""
    path = exp_dir / "baselines.csv"
    try:
        raw = read_bytes(path, "baselines", exp_dir)
    except FileNotFoundError:
        return pd.DataFrame()
    except OSError as exc:
        notes.append(f"{exc}; baselines left out")
        return pd.DataFrame()
    df = _checked_baselines(_read_csv(raw, path), path)  # malformed: one line, exit 2
    recorded = experiment.get("baselines_sha256")
    if isinstance(recorded, str) and sha256_bytes(raw) != recorded:
        notes.append(f"{path}: does not match the checksum experiment.json records (edited or "
                     "damaged); baselines left out until 'python -m bench run' computes them "
                     "again")
        return pd.DataFrame()
    content = experiment.get("dataset", {}).get("content", {})
    data = content.get("sha256") if isinstance(content, dict) else None
    if isinstance(data, str) and "data_sha256" in df and set(df["data_sha256"]) != {data}:
        notes.append(f"{path}: computed on other data than the experiment's; baselines left "
                     "out until 'python -m bench run' computes them again")
        return pd.DataFrame()
    return df


def tuning_problem(rec: dict, grid: dict, summary: pd.DataFrame) -> str | None:
    """Why ``tuning.json`` does not describe this experiment's own tuning, or None: every
    name a plain name and a schedule of ``grid.json``; every point a tuning point of its
    schedule (``base`` or ``base@...``) with its cells on the tuning seeds in the grid, and
    the mean final validation MAE it records equal to the one the verified records give;
    the choice the lowest of those; its evaluation cells in the grid; tuning and evaluation
    seeds apart. A file copied from another experiment, or written by hand, fails here."""
    names, cells = set(grid["schedules"]), {tuple(c) for c in grid["cells"]}
    tune_seeds, eval_seeds = rec["tuning_seeds"], rec["eval_seeds"]
    if not tune_seeds or not eval_seeds or set(tune_seeds) & set(eval_seeds):
        return "its tuning and evaluation seeds are empty or overlap"
    try:
        for name in [*rec["settings"], *rec["schedules"]]:
            check_name(name, "tuning.json")
    except ValueError as exc:
        return str(exc).removeprefix("tuning.json: ")
    foreign = [n for n in [*rec["settings"], *rec["schedules"]] if n not in names]
    if foreign:
        return f"names '{foreign[0]}', which is not a schedule of this experiment's grid"
    done = summary[summary["status"] == "finished"]
    val = {(s, int(b), int(seed)): float(v) for s, b, seed, v in
           zip(done["schedule"], done["budget"], done["seed"], done["val_mae"])}
    for base, per in rec["schedules"].items():
        for budget, choice in per.items():
            b = int(budget)
            scores: dict[str, float | None] = {}
            for point, recorded in choice["val_mae"].items():
                if point not in rec["settings"] or not (point == base or
                                                        point.startswith(base + "@")):
                    return f"'{point}' is not a tuning point of '{base}'"
                if any((point, b, s) not in cells for s in tune_seeds):
                    return f"'{point}' at {b} epochs was not tuned on its tuning seeds here"
                runs = [val.get((point, b, s)) for s in tune_seeds]
                score = None if None in runs else sum(runs) / len(runs)
                if (score is None) != (recorded is None) or (
                        score is not None and not math.isclose(score, recorded, rel_tol=1e-9)):
                    return (f"the validation MAE it records for '{point}' at {b} epochs is not "
                            "what the runs give")
                scores[point] = score
            eligible = {p: v for p, v in scores.items() if v is not None and math.isfinite(v)}
            chosen = choice.get("chosen")
            if chosen is None:
                if eligible:
                    return f"it chooses nothing for '{base}' at {b} epochs"
                continue
            if chosen not in eligible or eligible[chosen] > min(eligible.values()) * (1 + 1e-9):
                return (f"its choice for '{base}' at {b} epochs is not the lowest validation "
                        "MAE of the runs")
            if any((chosen, b, s) not in cells for s in eval_seeds):
                return f"'{chosen}' at {b} epochs was not evaluated on the evaluation seeds here"
    return None


def _facts_ok(facts) -> bool:
    """Whether the data facts of an experiment record have the types the report uses."""
    if facts == {}:
        return True
    num = (int, float)
    try:
        return (isinstance(facts, dict) and all(isinstance(facts[k], str) for k in (
            "name", "units", "start", "end", "null_value"))
            and all(isinstance(facts[k], num) for k in ("nodes", "steps", "interval_minutes",
                                                        "days"))
            and facts["interval_minutes"] > 0
            and all(isinstance(facts["splits"][k]["steps"], int)
                    and isinstance(facts["splits"][k]["windows"], int)
                    and isinstance(facts["splits"][k]["missing_share"], num)
                    for k in ("train", "val", "test")))
    except (KeyError, TypeError):
        return False


def _checked_baselines(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Baseline rows with every metric a number; else one ``ConfigError`` naming the cell."""
    if not {"baseline", "split", "mae"} <= set(df.columns):
        raise ConfigError(f"{path}: missing column(s) baseline/split/mae")
    for col in df.columns:
        if col in ("baseline", "split", "data_sha256"):
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        bad = (values.isna() & df[col].notna()) | ~np.isfinite(values.fillna(0)) | (values < 0)
        if bad.any():
            from bench.store import short_repr

            raise ConfigError(f"{path}: {col} {short_repr(df[col][bad].iloc[0])} is not a "
                              "finite number >= 0")
        df[col] = values
    return df


def read_tuning(exp_dir: Path, notes: list[str] | None = None) -> dict:
    """``tuning.json`` checked field by field (a results folder is untrusted input), or {}.
    A file that is refused (a link, not a regular file, too large) is left out with a note
    in ``notes``; one that is not a tuning record is a ``ConfigError``."""
    path = exp_dir / "tuning.json"
    bad = ConfigError(f"{path}: not a tuning record; move it aside or run the tuned grid "
                      "again")
    try:
        rec = read_json(path, "tuning", exp_dir)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        if notes is None:
            raise bad from None
        notes.append(f"{exc}; not used (the experiment is reported as untuned)")
        return {}
    except ValueError:
        raise bad from None
    ints = lambda v: isinstance(v, list) and all(  # noqa: E731
        isinstance(x, int) and not isinstance(x, bool) for x in v)
    numbers = lambda v: isinstance(v, list) and all(  # noqa: E731
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
        for x in v)
    if not (isinstance(rec, dict) and ints(rec.get("eval_seeds"))
            and ints(rec.get("tuning_seeds")) and isinstance(rec.get("schedules"), dict)
            and isinstance(rec.get("settings"), dict) and isinstance(rec.get("space"), dict)
            and all(numbers(rec["space"].get(k, [])) for k in ("lr", "weight_decay"))):
        raise bad
    for per in rec["schedules"].values():
        if not isinstance(per, dict):
            raise bad
        for budget, c in per.items():
            if not (budget.isascii() and budget.isdigit() and len(budget) < 10
                    and isinstance(c, dict)
                    and (c.get("chosen") is None or isinstance(c.get("chosen"), str))
                    and isinstance(c.get("val_mae"), dict)
                    and all(v is None or isinstance(v, (int, float))
                            for v in c["val_mae"].values())):
                raise bad
    for setting in rec["settings"].values():
        if not (isinstance(setting, dict) and all(isinstance(setting.get(k), (int, float))
                                                  for k in ("lr", "weight_decay"))):
            raise bad
    return rec


def per_seed(res: Results, schedule: str, budget: int, column: str = "test_mae"
             ) -> dict[int, float]:
    df = res.finished()
    df = df[(df["schedule"] == schedule) & (df["budget"] == budget)]
    return {int(s): float(v) for s, v in zip(df["seed"], df[column])}


def curve(res: Results, schedule: str, budget: int, column: str, seed: int | None = None
          ) -> list[float]:
    """Mean over seeds (or one seed) of an epoch column."""
    df = res.epochs[(res.epochs["schedule"] == schedule) & (res.epochs["budget"] == budget)]
    if seed is not None:
        df = df[df["seed"] == seed]
    return df.groupby("epoch")[column].mean().tolist()


def baseline(res: Results, name: str, split: str = "test", column: str = "mae") -> float | None:
    b = res.baselines
    if b.empty:
        return None
    row = b[(b["baseline"] == name) & (b["split"] == split)]
    return float(row[column].iloc[0]) if len(row) else None


def tuned_order(res: Results) -> list[str]:
    """The tuned schedules in the order their first tuning point was registered (a schedule
    whose own settings lie outside the space is registered under its own name last)."""
    tuned = res.tuning.get("schedules", {}) if res.tuning else {}
    order: list[str] = []
    for name in res.order:
        base = name.split("@")[0]
        if base in tuned and base not in order:
            order.append(base)
    return order + [s for s in tuned if s not in order]


def tuned_view(res: Results) -> Results:
    """A tuned experiment as if each schedule had been run at its chosen setting: per budget,
    the evaluation runs of the chosen point under the schedule's own name. Schedules without
    a choice at a budget (every tuning point failed) are left out there; an experiment that
    was not tuned is returned as it is."""
    chosen = res.tuning.get("schedules") if res.tuning else None
    if not chosen:
        return res
    summary, epochs = [], []
    for base, per_budget in chosen.items():
        for budget, choice in per_budget.items():
            if not isinstance(choice, dict) or not choice.get("chosen"):
                continue
            for frame, out in ((res.summary, summary), (res.epochs, epochs)):
                rows = frame[(frame["schedule"] == choice["chosen"])
                             & (frame["budget"] == int(budget))].copy()
                rows["schedule"] = base
                out.append(rows)
    if not summary:
        return replace(res, summary=res.summary.iloc[0:0], epochs=res.epochs.iloc[0:0],
                       tuning={}, tuning_runs=res.tuning_runs.iloc[0:0])
    return replace(res, summary=pd.concat(summary, ignore_index=True),
                   epochs=pd.concat(epochs, ignore_index=True), tuning={},
                   tuning_runs=res.tuning_runs.iloc[0:0])


def ranking(res: Results, budget: int, column: str = "test_mae") -> list[tuple[str, float]]:
    out = []
    for s in res.schedule_order:
        vals = per_seed(res, s, budget, column)
        if vals:
            out.append((s, float(np.mean(list(vals.values())))))
    return sorted(out, key=lambda t: t[1])


# -- the data, as the experiment record describes it ----------------------------------------
def data_facts(res: Results) -> dict:
    """Facts about the data recorded with the experiment (``bench.data.data_facts``); empty
    for a folder written before they were recorded."""
    facts = res.experiment.get("data")
    return facts if isinstance(facts, dict) else {}


def units(res: Results) -> str:
    """The data's units as recorded, control characters escaped and shortened (the text is
    escaped again for where it is shown)."""
    return visible(data_facts(res).get("units") or "original units", 80)


def dataset_title(res: Results) -> str:
    """The dataset's own name (never the path of a user's folder), as ``units`` is."""
    name = data_facts(res).get("name") or res.experiment.get("dataset", {}).get("name", "?")
    return visible(Path(str(name)).name, 80)


def interval_minutes(res: Results) -> int | None:
    return data_facts(res).get("interval_minutes")
