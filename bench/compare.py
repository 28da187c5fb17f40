"""``python -m bench compare EXP [EXP ...]``: one answer across experiments.

Experiments may differ in dataset, model and profile; a schedule or budget counts for an
experiment only where that experiment ran it. Per budget, each schedule's mean final test MAE
over finished seeds gives its rank within each experiment and its ratio to that experiment's
best; the mean rank orders the schedules, the ratios make the performance profile (the share
of experiments in which a schedule is within a factor τ of the best, as AlgoPerf scores
submissions), and ``recommend`` applies ``RECOMMENDATION_RULE`` with the paired statistics of
``bench.report.stats``. Writes ``<out>/<name>/compare.md`` and ``performance_profile.png``.

Tuned experiments (``bench run --tune``) are compared as tuned (``tuned_view``): each
schedule is represented at every budget by its chosen setting's evaluation runs, so the
answer is about schedule shapes with the same tuning budget, not about the one lr each
schedule's definition names. ``--settings own`` compares the schedules' own settings instead.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from bench.config import ConfigError
from bench.escape import md_code, md_text, terminal
from bench.report.markdown import md_table
from bench.report.results import Results, load_results, per_seed, ranking, tuned_view
from bench.report.stats import VERDICT_RULE, holm, paired_comparison, verdict
from bench.store import atomic_write_text

NEAR_BEST = 0.01  # "within 1 % of the best on average" when none is recommended
TAU_MAX = 1.25

RECOMMENDATION_RULE = (
    "A schedule is recommended at a budget only if it ran in every experiment with that "
    "budget, has the best mean rank, is in every experiment either the best or not "
    "detectably worse than that experiment's best (paired by seed, verdict \"no detectable "
    "difference\"), and in at least one experiment is \"better\" than every other schedule "
    "(paired by seed, Holm-adjusted over those comparisons); otherwise no schedule is reliably "
    "better, and those within 1 % of the best on average are listed.")


@dataclass
class Budget:
    """One budget across experiments: means, ranks and ratios per experiment."""

    budget: int
    experiments: list[str]                                   # those that ran this budget
    means: dict[str, dict[str, float]] = field(default_factory=dict)   # exp -> schedule -> MAE
    ranks: dict[str, dict[str, int]] = field(default_factory=dict)
    ratios: dict[str, dict[str, float]] = field(default_factory=dict)

    def schedules(self, order: list[str]) -> list[str]:
        """Schedules that ran here, by mean rank, then in ``order``."""
        present = [s for s in order if any(s in self.means[e] for e in self.experiments)]
        return sorted(present, key=lambda s: (self.mean_rank(s), order.index(s)))

    def mean_rank(self, schedule: str) -> float:
        return float(np.mean([r[schedule] for r in self.ranks.values() if schedule in r]))

    def mean_ratio(self, schedule: str) -> float:
        return float(np.mean([r[schedule] for r in self.ratios.values() if schedule in r]))


def tabulate(results: list[Results]) -> tuple[list[Budget], list[str]]:
    """Per budget, each experiment's means, ranks (1 = lowest mean; equal means share the
    better rank) and ratios to its best; and every schedule in first-registered order."""
    order: list[str] = []
    for res in results:
        order += [s for s in res.schedule_order if s not in order]
    out = []
    for b in sorted({b for res in results for b in res.budgets}):
        table = Budget(b, [])
        for res in results:
            ranked = ranking(res, b) if b in res.budgets else []
            if not ranked:
                continue
            table.experiments.append(res.name)
            best = ranked[0][1]
            table.means[res.name] = dict(ranked)
            ranks = stats.rankdata([m for _, m in ranked], method="min")  # ties share
            table.ranks[res.name] = {s: int(r) for (s, _), r in zip(ranked, ranks)}
            table.ratios[res.name] = {s: m / best for s, m in ranked}
        if table.experiments:
            out.append(table)
    return out, order


def recommend(table: Budget, results: dict[str, Results], order: list[str]
              ) -> tuple[str | None, str]:
    """The schedule ``RECOMMENDATION_RULE`` recommends at this budget (or None) and the
    sentence that says so."""
    b = table.budget
    names = table.schedules(order)
    ranks = [table.mean_rank(s) for s in names]
    top = names[0]
    near = [s for s in names if table.mean_ratio(s) <= 1 + NEAR_BEST]
    none = (f"At {b} epochs no schedule is reliably better; within 1 % of the best on average: "
            + ", ".join(f"`{s}`" for s in near).replace("{", "{{").replace("}", "}}")
            + " ({why}).")
    if len(names) < 2:
        return None, none.format(why="only one schedule ran")
    if ranks.count(ranks[0]) > 1:
        return None, none.format(why="the best mean rank is shared")
    missing = [e for e in table.experiments if top not in table.means[e]]
    if missing:
        return None, none.format(why=f"`{top}`, best by mean rank, did not run in "
                                     + ", ".join(md_code(e) for e in missing))
    for e in table.experiments:
        best = min(table.means[e], key=table.means[e].get)
        if best == top:
            continue
        cmp = paired_comparison(per_seed(results[e], best, b), per_seed(results[e], top, b))
        word = verdict(cmp["mean"], cmp["p"], cmp["n"]) if cmp else "no shared seeds"
        if word != "no detectable difference":
            return None, none.format(why=f"in {md_code(e)} its best, `{best}`, against "
                                         f"`{top}`: {word}")
    seen: list[str] = []  # the verdicts that kept it from being better than all others
    for e in table.experiments:
        others = [s for s in table.means[e] if s != top]
        cmps = [paired_comparison(per_seed(results[e], top, b), per_seed(results[e], s, b))
                for s in others]
        if not others or any(c is None for c in cmps):
            continue
        adjusted = holm([c["p"] for c in cmps])
        words = [verdict(c["mean"], p, c["n"], comparisons=len(cmps))
                 for c, p in zip(cmps, adjusted)]
        if all(w == "better" for w in words):
            return top, (f"At {b} epochs use `{top}`: best mean rank "
                         f"({table.mean_rank(top):.2f}), never detectably worse than an "
                         f"experiment's best, and detectably better than every other schedule "
                         f"in {md_code(e)}.")
        seen += [w for w in dict.fromkeys(words) if w != "better" and w not in seen]
    return None, none.format(why=f"`{top}`, best by mean rank, is detectably better than every "
                                 "other schedule in no experiment"
                                 + (f": {', '.join(seen)}" if seen else ""))


def _label(value) -> str:
    """A dataset or model name without any folders (no machine paths in the summary)."""
    return Path(str(value)).name if value else "?"


def describe(res: Results) -> str:
    dataset = res.experiment.get("dataset", {})
    data = dataset.get("content", {}).get("name") or dataset.get("name")
    model = res.experiment.get("model", {}).get("name")
    seeds = res.finished()["seed"].nunique()
    return (f"{md_code(res.name)} (dataset {md_text(_label(data))}, model "
            f"{md_text(_label(model))}, {seeds} seeds)")


def render(name: str, results: list[Results], tables: list[Budget], order: list[str],
           figure: str, settings: str = "own") -> str:
    by_name = {res.name: res for res in results}
    view = ("**Each schedule tuned.** Every schedule is represented by the setting its "
            "experiment's tuning protocol chose per budget on validation MAE over the tuning "
            "seeds; its test numbers come from the held-out evaluation seeds."
            if settings == "tuned" else
            "**Own settings.** Every schedule runs at the lr and weight decay its definition "
            "names.")
    parts = [f"# Schedules across experiments: {name}",
             "Experiments: " + "; ".join(describe(res) for res in results) + ".",
             view,
             "Per budget, each schedule's rank within each experiment by mean final test MAE "
             "over finished seeds (1 = best) and, in parentheses, its ratio to that "
             "experiment's best mean; – where an experiment did not run it. Rows are ordered "
             "by the mean rank over the experiments that ran the schedule.",
             f"**Recommendation rule.** {RECOMMENDATION_RULE} {VERDICT_RULE}"]
    for table in tables:
        names = table.schedules(order)
        rows = []
        for s in names:
            cells = [f"{table.ranks[e][s]} ({table.ratios[e][s]:.3f})" if s in table.ranks[e]
                     else "–" for e in table.experiments]
            rows.append([f"`{s}`", *cells, f"{table.mean_rank(s):.2f}",
                         f"{table.mean_ratio(s):.3f}"])
        _, sentence = recommend(table, by_name, order)
        parts.append(f"## {table.budget} epochs\n\n"
                     + md_table(["schedule", *[md_code(e) for e in table.experiments],
                                 "mean rank", "mean ratio"], rows)
                     + f"\n\n**Recommendation.** {sentence}")
    parts.append("## Performance profile\n\n"
                 f"![performance profile]({figure})\n\n"
                 "For each schedule, the share of the experiments with that budget in which its "
                 "mean final test MAE is within a factor τ of the best schedule's, τ from 1 to "
                 f"{TAU_MAX}; a schedule an experiment did not run counts as outside. A curve "
                 "that starts high (often the best) and reaches 1 early (never far behind) is "
                 "the robust choice.")
    return "\n\n".join(parts) + "\n"


def profile_ratios(tables: list[Budget], order: list[str]) -> dict[int, dict[str, list[float]]]:
    """Per budget and schedule, its ratio to the best in each experiment (inf where absent)."""
    return {t.budget: {s: [t.ratios[e].get(s, float("inf")) for e in t.experiments]
                       for s in t.schedules(order)} for t in tables}


def write_compare(results: list[Results], out_dir: Path, name: str,
                  settings: str = "own") -> Path:
    """``settings``: ``own`` (each schedule's own lr and weight decay) or ``tuned`` (every
    experiment must be tuned; each schedule at its chosen setting, ``tuned_view``)."""
    from bench.report.figures import performance_profile_figure

    if settings == "tuned":
        untuned = [res.name for res in results if not res.tuning]
        if untuned:
            raise ConfigError(f"--settings tuned: {', '.join(untuned)} "
                              f"{'was' if len(untuned) == 1 else 'were'} not tuned (run it "
                              "with --tune, or compare with --settings own)")
        results = [tuned_view(res) for res in results]
    tables, order = tabulate(results)
    if not tables:
        raise ConfigError("no finished runs in these experiments; nothing to compare")
    from bench.report.command import _make_folder

    target = out_dir / name
    _make_folder(target)
    figure = "performance_profile.png"
    performance_profile_figure(profile_ratios(tables, order), order, target / figure,
                               tau_max=TAU_MAX, title=f"Performance profile ({name})")
    path = target / "compare.md"
    atomic_write_text(path, render(name, results, tables, order, figure, settings))
    return path


def cmd_compare(args) -> int:
    names = list(args.experiments)
    if len(names) < 2:
        print("error: compare needs two or more experiments", file=sys.stderr)
        return 2
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        print(f"error: experiment given twice: {', '.join(twice)}", file=sys.stderr)
        return 2
    from bench.cli import check_experiment_name

    results_dir = Path(args.results)
    for n in [*names, args.name]:
        check_experiment_name(n)  # plain names: nothing read or written outside the folders
    for n in names:
        if not (results_dir / n).is_dir() and not (results_dir / n).is_symlink():
            print(f"error: unknown experiment '{n}' (no folder {results_dir / n})",
                  file=sys.stderr)
            return 2
    notes: list[str] = []
    results = [load_results(results_dir / n, notes) for n in names]
    for note in dict.fromkeys(notes):
        print(f"note: {terminal(note, 1000)}", file=sys.stderr)
    settings = args.settings or ("tuned" if all(res.tuning for res in results) else "own")
    path = write_compare(results, Path(args.out), args.name, settings)
    print(f"wrote {path} and performance_profile.png", file=sys.stderr)
    return 0
