"""Reading an experiment folder back into tables for the report and the regression check,
and the lookups every report section uses (per-seed values, mean curves, baselines, ranks)."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import ConfigError
from bench.tables import read_grid, rebuild_tables

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
    # ``epochs`` and ``summary`` hold the evaluation seeds only.
    tuning: dict = field(default_factory=dict)

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


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; run 'python -m bench run' first") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc})") from None


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
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        raise ConfigError(f"{exp_dir}: no such experiment folder (see --results/--experiment)")
    epochs_text, summary_text, found = rebuild_tables(exp_dir)
    if notes is not None:
        notes.extend(found)
    summary = _parse_table(summary_text, exp_dir / "summary.csv")
    epochs = _parse_table(epochs_text, exp_dir / "epochs.csv")
    if summary.empty:
        raise ConfigError(f"{exp_dir / 'summary.csv'}: holds no runs")
    baselines_path = exp_dir / "baselines.csv"
    baselines = (_checked_baselines(_read_csv(baselines_path), baselines_path)
                 if baselines_path.exists() else pd.DataFrame())
    grid = read_grid(exp_dir)
    experiment = {}
    if (exp_dir / "experiment.json").exists():
        try:
            experiment = json.loads((exp_dir / "experiment.json").read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{exp_dir / 'experiment.json'}: unreadable ({exc})") from None
        if not isinstance(experiment, dict) or not _facts_ok(experiment.get("data", {})) or \
                not all(isinstance(experiment.get(k, {}), dict)
                        for k in ("dataset", "model", "train")):
            raise ConfigError(f"{exp_dir / 'experiment.json'}: not an experiment record; "
                              "run 'python -m bench run' again to rewrite it")
    environment, run_config = {}, {}
    for cfg in sorted((exp_dir / "runs").glob("*/*/config.json")):
        try:
            run_config = json.loads(cfg.read_text())
            environment = run_config.get("environment", {})
            break
        except (OSError, ValueError):
            continue
    schedules = grid.get("schedules", {})
    order = grid.get("order") or sorted(schedules)
    tuning = read_tuning(exp_dir)
    if tuning:  # the test comparison uses the evaluation seeds alone
        summary = summary[summary["seed"].isin(tuning["eval_seeds"])]
        epochs = epochs[epochs["seed"].isin(tuning["eval_seeds"])]
        if summary.empty:
            raise ConfigError(f"{exp_dir / 'summary.csv'}: holds no run of the evaluation "
                              f"seeds {tuning['eval_seeds']} yet")
    return Results(exp_dir.name, epochs, summary, baselines, schedules, order, experiment,
                   environment, run_config, tuning)


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
        bad = values.isna() & df[col].notna()
        if bad.any():
            raise ConfigError(f"{path}: non-numeric {col} {df[col][bad].iloc[0]!r}")
        df[col] = values
    return df


def read_tuning(exp_dir: Path) -> dict:
    """``tuning.json`` checked field by field (a results folder is untrusted input), or {}."""
    path = exp_dir / "tuning.json"
    if not path.exists():
        return {}
    bad = ConfigError(f"{path}: not a tuning record; move it aside or run the tuned grid "
                      "again")
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError):
        raise bad from None
    ints = lambda v: isinstance(v, list) and all(  # noqa: E731
        isinstance(x, int) and not isinstance(x, bool) for x in v)
    if not (isinstance(rec, dict) and ints(rec.get("eval_seeds"))
            and ints(rec.get("tuning_seeds")) and isinstance(rec.get("schedules"), dict)
            and isinstance(rec.get("settings"), dict) and isinstance(rec.get("space"), dict)):
        raise bad
    for per in rec["schedules"].values():
        if not isinstance(per, dict):
            raise bad
        for budget, c in per.items():
            if not (budget.isdigit() and isinstance(c, dict)
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
                       tuning={})
    return replace(res, summary=pd.concat(summary, ignore_index=True),
                   epochs=pd.concat(epochs, ignore_index=True), tuning={})


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
    return data_facts(res).get("units") or "original units"


def dataset_title(res: Results) -> str:
    """The dataset's own name (never the path of a user's folder)."""
    name = data_facts(res).get("name") or res.experiment.get("dataset", {}).get("name", "?")
    return Path(str(name)).name


def interval_minutes(res: Results) -> int | None:
    return data_facts(res).get("interval_minutes")
