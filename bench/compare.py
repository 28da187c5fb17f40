"""``python -m bench compare EXP [EXP ...]``: one answer across experiments.

Experiments may differ in dataset, model and profile; a schedule or budget counts for an
experiment only where that experiment ran it, and schedules whose runs are identical in every
experiment (``multistep`` and ``constant`` at 30 epochs) are one row. Per budget and pair of
schedules, the per-seed log ratios of final test MAE are pooled over the experiments with
equal weight per experiment and judged by ``bench.report.stats.pooled_comparison``: a
stratified sign-flip test of the pooled mean, a pooled TOST for equivalence within the
margin, a fixed-effect interval "on these datasets" and a random-effects interval "for a new
dataset". ``RECOMMENDATION_RULE`` decides.

Beside it, two descriptive views in AlgoPerf's manner: the performance profile of final test
MAE (the share of experiments in which a schedule is within a factor τ of the best) and the
profile of epochs to reach a validation target (counted only where a majority of seeds reach
it). Writes ``<out>/<name>/compare.md``, ``per_seed.csv``, ``performance_profile.png`` and
``epochs_profile.png``.

Tuned experiments (``bench run --tune``) are compared as tuned (``tuned_view``): each
schedule is represented at every budget by its chosen setting's evaluation runs.
``--settings own`` compares the schedules' own settings instead.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import stats

from bench.config import ConfigError
from bench.escape import terminal
from bench.report.command import per_seed_csv
from bench.report.markdown import code, codes, md_table, md_text, p_text, pct
from bench.report.results import BASELINE_LABELS, Results, baseline, curve, load_results
from bench.report.settings import read_judging
from bench.report.stats import (
    ALPHA,
    MARGIN,
    Pooled,
    best_set,
    epochs_to_reach,
    interval_pct,
    log_ratios,
    margin_text,
    pooled_comparison,
    recommends,
)
from bench.report.verdicts import headline_view, merged_rows
from bench.store import atomic_write_text

TAU_MAX = 1.25
EPOCH_TAU_MAX = 4.0

RECOMMENDATION_RULE = (
    "Per budget, each pair of schedules is compared on the per-seed log ratio of final test "
    "MAE, pooled over the experiments with equal weight per experiment: a stratified "
    "sign-flip test of the pooled mean (each seed's sign flipped within its experiment; "
    "every pattern up to 16 seeds, otherwise 9999 random ones, seeded), a pooled TOST "
    "(the same test against ± the margin), a fixed-effect 95 % interval *on these datasets* "
    "and a random-effects 95 % interval *for a new dataset* (statsmodels' combine_effects; "
    "Hartung–Knapp, so with few experiments it is wide). The schedule with the lowest pooled "
    "mean among those that ran in every experiment is **recommended** only if its pooled "
    "test rejects (p ≤ 0.05) against every other schedule and no experiment judges it "
    "worse than another (it is in every experiment's best set: all pairs, paired t, Holm); "
    "otherwise each other schedule reads *equivalent within ±δ on these datasets* (pooled "
    "TOST p ≤ 0.05) or *inconclusive*, with both intervals.")


@dataclass
class Budget:
    """One budget across experiments: per experiment, each row's mean, rank and ratio to
    that experiment's best. Rows are schedules, or tuples of schedules with identical runs
    in every experiment."""

    budget: int
    experiments: list[str]                                   # those that ran this budget
    rows: list[tuple[str, ...]] = field(default_factory=list)
    values: dict[str, dict[tuple[str, ...], dict[int, float]]] = field(default_factory=dict)
    means: dict[str, dict[tuple[str, ...], float]] = field(default_factory=dict)
    ranks: dict[str, dict[tuple[str, ...], float]] = field(default_factory=dict)
    ratios: dict[str, dict[tuple[str, ...], float]] = field(default_factory=dict)

    def schedules(self, order: list[str] | None = None) -> list[tuple[str, ...]]:
        """Rows by mean rank, then in registration order."""
        return sorted(self.rows, key=lambda r: (self.mean_rank(r), self.rows.index(r)))

    def mean_rank(self, row: tuple[str, ...]) -> float:
        return float(np.mean([r[row] for r in self.ranks.values() if row in r]))

    def mean_ratio(self, row: tuple[str, ...]) -> float:
        return float(np.mean([r[row] for r in self.ratios.values() if row in r]))

    def everywhere(self, row: tuple[str, ...]) -> bool:
        return all(row in self.values[e] for e in self.experiments)


def _merged(results: list[Results], budget: int) -> list[tuple[str, ...]]:
    """Rows of a budget across experiments: schedules merge where their runs are identical
    in every experiment that ran either."""
    order: list[str] = []
    for res in results:
        order += [s for s in res.schedule_order if s not in order]
    groups = {res.name: {s: r.names for r in merged_rows(res, budget) for s in r.names}
              for res in results if budget in res.budgets}
    rows: list[tuple[str, ...]] = []
    placed: set[str] = set()
    for s in order:
        if s in placed or not any(s in g for g in groups.values()):
            continue
        members = [s]
        for t in order:
            if t in placed or t == s or not any(t in g for g in groups.values()):
                continue
            if all((s in g) == (t in g) and (s not in g or t in g[s])
                   for g in groups.values()):
                members.append(t)
        placed.update(members)
        rows.append(tuple(members))
    return rows


def tabulate(results: list[Results]) -> tuple[list[Budget], list[str]]:
    """Per budget, each experiment's per-seed values, means, ranks (1 = lowest mean; equal
    means share the average rank) and ratios to its best; and every schedule in
    first-registered order."""
    order: list[str] = []
    for res in results:
        order += [s for s in res.schedule_order if s not in order]
    out = []
    for b in sorted({b for res in results for b in res.budgets}):
        table = Budget(b, [], _merged(results, b))
        for res in results:
            if b not in res.budgets:
                continue
            present = {r.name: r for r in merged_rows(res, b)}
            values = {row: present[row[0]].values for row in table.rows
                      if row[0] in present and present[row[0]].values}
            if not values:
                continue
            table.experiments.append(res.name)
            table.values[res.name] = values
            means = {row: float(np.mean(list(v.values()))) for row, v in values.items()}
            table.means[res.name] = means
            ranked = list(means)
            ranks = stats.rankdata([means[r] for r in ranked], method="average")
            table.ranks[res.name] = {r: float(k) for r, k in zip(ranked, ranks)}
            best = min(means.values())
            table.ratios[res.name] = {r: m / best for r, m in means.items()}
        table.rows = [r for r in table.rows if any(r in v for v in table.values.values())]
        if table.experiments:
            out.append(table)
    return out, order


@dataclass
class Answer:
    """The cross-experiment verdict at one budget."""

    budget: int
    top: tuple[str, ...] | None
    pooled: dict[tuple[str, ...], Pooled]                 # every other row: top against it
    pairs: dict[tuple[tuple[str, ...], tuple[str, ...]], Pooled]   # every pair (a, b): b vs a
    worse_in: dict[str, tuple[str, ...]]                  # experiment -> a row better than top
    recommended: bool
    margin: float
    why: str = ""

    def word(self, other: tuple[str, ...]) -> str:
        """The verdict of the top against ``other``."""
        p = self.pooled.get(other)
        return "no shared seeds" if p is None else pair_word(p, self.top, other)


def _pair(table: Budget, a: tuple[str, ...], b: tuple[str, ...], margin: float
          ) -> Pooled | None:
    """``a`` against ``b``: per-seed log ratios a/b in every experiment that ran both."""
    diffs = [log_ratios(table.values[e][a], table.values[e][b]) for e in table.experiments
             if a in table.values[e] and b in table.values[e]]
    return pooled_comparison([d for d in diffs if len(d)], margin)


def judge(table: Budget, margin: float) -> Answer:
    """``RECOMMENDATION_RULE`` at one budget."""
    exps = table.experiments
    everywhere = [r for r in table.rows if table.everywhere(r)]
    pairs = {}
    for i, a in enumerate(table.rows):
        for b in table.rows[i + 1:]:
            p = _pair(table, b, a, margin)
            if p is not None:
                pairs[(a, b)] = p
    if not everywhere:
        return Answer(table.budget, None, {}, pairs, {}, False, margin,
                      "no schedule ran in every experiment with this budget")

    def score(row: tuple[str, ...]) -> float:
        return float(np.mean([np.mean(np.log(list(table.values[e][row].values())))
                              for e in exps]))

    top = min(everywhere, key=lambda r: (score(r), table.rows.index(r)))
    pooled = {}
    for other in table.rows:
        if other != top:
            p = _pair(table, top, other, margin)
            if p is not None:
                pooled[other] = p
    worse_in = {}
    for e in exps:
        values = {row[0]: v for row, v in table.values[e].items()}
        best = best_set(values, margin)
        if best is not None and top[0] in best.beaten:
            beater = best.beaten[top[0]]
            worse_in[e] = next(r for r in table.rows if r[0] == beater)
    ok = recommends([(p.mean, p.p) for p in pooled.values()], bool(worse_in))
    if len(pooled) < len(table.rows) - 1:
        ok = False
    return Answer(table.budget, top, pooled, pairs, worse_in, ok, margin)


def sentence(answer: Answer) -> str:
    """The recommendation, or what holds instead."""
    if answer.top is None:
        return f"no schedule is recommended: {answer.why}."
    top = codes(answer.top)
    if answer.recommended:
        return (f"**use {top}**: better than every other schedule on these datasets (pooled "
                "sign-flip test against each, p ≤ 0.05), and no experiment judges it worse "
                "than another.")
    beaten = [o for o, p in answer.pooled.items() if p.p <= ALPHA and p.mean < 0]
    rest = [o for o in answer.pooled if o not in beaten]
    parts = [f"no schedule is recommended. Lowest pooled mean: {top}"]
    if beaten:
        parts.append(f"better on these datasets than {', '.join(codes(o) for o in beaten)}")
    if rest:
        listed = []
        for o in rest:
            word = answer.word(o)
            if word == "inconclusive":
                p = answer.pooled[o]
                word = (f"inconclusive: {pct(p.change)}, on these datasets "
                        f"{interval_pct(p.fixed)}, for a new dataset {interval_pct(p.random)}")
            listed.append(f"{codes(o)} ({word})")
        parts.append("not separable from " + ", ".join(listed))
    text = "; ".join(parts) + "."
    for e, beater in answer.worse_in.items():
        text += f" In {code(e)} it is judged worse than {codes(beater)} (that experiment's " \
                "best set)."
    return text


def _label(value) -> str:
    """A dataset or model name without any folders (no machine paths in the summary)."""
    return md_text(Path(str(value)).name) if value else "?"


def describe(res: Results) -> str:
    dataset = res.experiment.get("dataset", {})
    data = dataset.get("content", {}).get("name") or dataset.get("name")
    model = res.experiment.get("model", {}).get("name")
    seeds = res.finished()["seed"].nunique()
    return f"{code(res.name)} (dataset {_label(data)}, model {_label(model)}, {seeds} seeds)"


def baselines_text(answer: Answer, table: Budget, results: dict[str, Results]) -> str:
    """In how many experiments the top beats each baseline (mean final test MAE)."""
    if answer.top is None:
        return ""
    parts = []
    for name, label in BASELINE_LABELS.items():
        have = [(e, baseline(results[e], name)) for e in table.experiments]
        have = [(e, v) for e, v in have if v is not None]
        if not have:
            continue
        wins = sum(table.means[e][answer.top] < v for e, v in have)
        parts.append(f"{'the ' if label != 'persistence' else ''}{label} in {wins} of "
                     f"{len(have)}")
    if not parts:
        return ""
    return f"{codes(answer.top)} beats " + " and ".join(parts) + " experiments."


def answer_section(tables: list[Budget], answers: dict[int, Answer],
                   results: dict[str, Results], margin: float) -> str:
    lines = []
    for table in tables:
        a = answers[table.budget]
        seeds = sorted({len(v) for e in table.experiments for v in table.values[e].values()})
        seed_text = (f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}")
        lines.append(f"- **{table.budget} epochs** ({len(table.experiments)} experiments, "
                     f"{seed_text} seeds each, margin ±{margin_text(margin)}): "
                     f"{sentence(a)} {baselines_text(a, table, results)}".rstrip())
    return ("## Answer\n\nPer budget, the schedule to use across these experiments, or what "
            "the evidence supports instead (the rule is under *How this is decided*).\n\n"
            + "\n".join(lines))


def pair_word(p: Pooled, first: tuple[str, ...], second: tuple[str, ...]) -> str:
    """The verdict of a pooled comparison of ``first`` against ``second``."""
    if p.p <= ALPHA:
        return f"{codes(first if p.mean < 0 else second)} better on these datasets"
    if p.p_tost <= ALPHA:
        return f"equivalent within ±{margin_text(p.margin)} on these datasets"
    return "inconclusive"


def pairs_table(answer: Answer) -> str:
    """Every pair at a budget, the top's pairs first (each first against second)."""
    ordered = [(answer.top, o, p) for o, p in answer.pooled.items()] if answer.top else []
    ordered += [(b, a, p) for (a, b), p in answer.pairs.items() if answer.top not in (a, b)]
    rows = [[f"{codes(first)} vs {codes(second)}", str(p.experiments), str(p.seeds),
             pct(p.change), p_text(p.p, p.exact), p_text(p.p_tost, p.exact),
             interval_pct(p.fixed), interval_pct(p.random), pair_word(p, first, second)]
            for first, second, p in ordered]
    return md_table(["pair (first against second)", "experiments", "seeds", "pooled change",
                     "sign-flip p", f"TOST ±{margin_text(answer.margin)} p",
                     "on these datasets (95 %)", "for a new dataset (95 %)", "verdict"],
                    rows, "lrrrrrrrl")


def epochs_profile(tables: list[Budget], results: dict[str, Results], margin: float
                   ) -> tuple[dict[int, dict[str, list[float]]], dict[int, list[list[str]]]]:
    """AlgoPerf's time-to-result view: per experiment and budget, the validation target is
    the best row's mean final validation MAE times (1 + margin); a row's time is the median
    over seeds of the epochs its validation MAE needs to reach the target, counted only when
    a majority of seeds reach it. Returns the ratios to the fastest (inf: not reached) for
    the figure, and the epochs per experiment for the table."""
    ratios: dict[int, dict[str, list[float]]] = {}
    cells: dict[int, list[list[str]]] = {}
    for t in tables:
        times: dict[str, dict[tuple[str, ...], float]] = {}
        for e in t.experiments:
            res = results[e]
            finals = {}
            for row in t.values[e]:
                last = [curve(res, row[0], t.budget, "val_mae", s)[-1:] for s in t.values[e][row]]
                finals[row] = float(np.mean([c[0] for c in last if c]))
            target = (1 + margin) * min(finals.values())
            times[e] = {}
            for row, seeds in t.values[e].items():
                reach = [epochs_to_reach(curve(res, row[0], t.budget, "val_mae", s), target)
                         for s in seeds]
                epochs = [float("inf") if r is None else float(r) for r in reach]
                hit = sum(r is not None for r in reach)
                times[e][row] = (float(np.median(epochs)) if hit * 2 > len(reach)
                                 else float("inf"))
        names = t.schedules()
        ratios[t.budget] = {}
        cells[t.budget] = []
        for row in names:
            per = []
            for e in t.experiments:
                fastest = min(times[e].values())
                per.append(times[e].get(row, float("inf")) / fastest
                           if np.isfinite(fastest) else float("inf"))
            ratios[t.budget][" = ".join(row)] = per
            cells[t.budget].append([codes(row)] + [
                (f"{times[e][row]:g}" if np.isfinite(times[e].get(row, np.inf)) else "–")
                for e in t.experiments])
    return ratios, cells


def render(name: str, results: list[Results], tables: list[Budget], order: list[str],
           figures: dict[str, str], settings: str = "own", margin: float = MARGIN,
           epochs: dict[int, list[list[str]]] | None = None, command: str | None = None
           ) -> str:
    by_name = {res.name: res for res in results}
    answers = {t.budget: judge(t, margin) for t in tables}
    view = ("**Each schedule tuned.** Every schedule is represented by the setting its "
            "experiment's tuning protocol chose per budget on validation MAE over the tuning "
            "seeds; its test numbers come from the held-out evaluation seeds."
            if settings == "tuned" else
            "**Own settings.** Every schedule runs at the lr and weight decay its definition "
            "names.")
    parts = [f"# Schedules across experiments: {md_text(name)}",
             answer_section(tables, answers, by_name, margin),
             "## Experiments\n\n" + "; ".join(describe(res) for res in results) + ". "
             + view + " Per-seed numbers of every experiment: `per_seed.csv` beside this "
             "summary." + (f" Regenerate with {code(command, 1000)}." if command else ""),
             f"## How this is decided\n\n**Recommendation rule.** {RECOMMENDATION_RULE} "
             f"Margin δ = ±{margin_text(margin)} on the MAE ratio. Identical runs (the same "
             "per-seed records in every experiment) are one row."]
    for table in tables:
        answer = answers[table.budget]
        rows = []
        for row in table.schedules():
            cells = [f"{table.ranks[e][row]:g} ({table.ratios[e][row]:.3f})"
                     if row in table.ranks[e] else "–" for e in table.experiments]
            rows.append([codes(row), *cells, f"{table.mean_rank(row):.2f}",
                         f"{table.mean_ratio(row):.3f}"])
        parts.append(
            f"## {table.budget} epochs\n\n**Recommendation.** {sentence(answer)}\n\n"
            "Pooled over the experiments (pooled change: the top's, or the first's, MAE "
            "ratio to the second's, minus 1; negative is better). Each pair is tested on its "
            "own, with no correction for the table's other pairs: read a verdict below as one "
            "comparison, not as a ranking (the recommendation needs no correction, since its "
            "schedule must beat every other):\n\n"
            + pairs_table(answer)
            + "\n\nDescriptive: each schedule's rank within each experiment by mean final "
            "test MAE (1 = best; ties share the average rank) and, in parentheses, its ratio "
            "to that experiment's best mean; – where an experiment did not run it.\n\n"
            + md_table(["schedule", *[code(e) for e in table.experiments], "mean rank",
                        "mean ratio"], rows))
    parts.append("## Performance profiles (descriptive)\n\n"
                 f"![performance profile]({figures['performance']})\n\n"
                 "For each schedule, the share of the experiments with that budget in which its "
                 "mean final test MAE is within a factor τ of the best schedule's, τ from 1 to "
                 f"{TAU_MAX}; a schedule an experiment did not run counts as outside. It "
                 "describes these experiments; the verdicts above are the tests.")
    if epochs:
        epoch_tables = "\n\n".join(
            f"### {t.budget} epochs\n\n" + md_table(
                ["schedule", *[code(e) for e in t.experiments]], epochs[t.budget])
            for t in tables)
        parts.append(f"![epochs profile]({figures['epochs']})\n\n"
                     "Time to result, as AlgoPerf scores training algorithms: per experiment "
                     "and budget the validation target is the best schedule's mean final "
                     f"validation MAE plus {margin_text(margin)}; a schedule's time is the "
                     "median over seeds of the epochs its validation MAE needs to reach it, "
                     "counted only where a majority of its seeds reach it (– otherwise, and "
                     "outside in the profile); the profile shows the share of experiments in "
                     f"which it is within a factor τ (1 to {EPOCH_TAU_MAX:g}) of the fastest. "
                     "Epochs to the target:\n\n" + epoch_tables)
    return "\n\n".join(parts) + "\n"


def profile_ratios(tables: list[Budget], order: list[str] | None = None
                   ) -> dict[int, dict[str, list[float]]]:
    """Per budget and row, its ratio to the best in each experiment (inf where absent)."""
    return {t.budget: {" = ".join(row): [t.ratios[e].get(row, float("inf"))
                                         for e in t.experiments]
                       for row in t.schedules()} for t in tables}


def common_margin(results: list[Results], results_dir: Path | None,
                  margin: float | None) -> float:
    """``--margin``, else the margin every experiment records, else the default; experiments
    that record different margins need ``--margin``."""
    if margin is not None:
        if not (0 < margin < 0.5):
            raise ConfigError(f"--margin {margin}: must be in (0, 0.5), e.g. 0.02 for ±2 %")
        return margin
    if results_dir is None:
        return MARGIN
    recorded = {res.name: read_judging(results_dir / res.name).margin for res in results}
    if len(set(recorded.values())) > 1:
        listed = ", ".join(f"{n} {margin_text(m)}" for n, m in recorded.items())
        raise ConfigError(f"the experiments record different margins ({listed}); choose one "
                          "with --margin")
    return next(iter(recorded.values()))


def write_compare(results: list[Results], out_dir: Path, name: str,
                  settings: str = "own", margin: float = MARGIN,
                  command: str | None = None) -> Path:
    """``settings``: ``own`` (each schedule's own lr and weight decay) or ``tuned`` (every
    experiment must be tuned; each schedule at its chosen setting, ``tuned_view``)."""
    from bench.report.figures import performance_profile_figure

    originals = list(results)
    if settings == "tuned":
        untuned = [res.name for res in results if not res.tuning]
        if untuned:
            raise ConfigError(f"--settings tuned: {', '.join(untuned)} "
                              f"{'was' if len(untuned) == 1 else 'were'} not tuned (run it "
                              "with --tune, or compare with --settings own)")
        results = [headline_view(res) for res in results]
    tables, order = tabulate(results)
    if not tables:
        raise ConfigError("no finished runs in these experiments; nothing to compare")
    by_name = {res.name: res for res in results}
    from bench.report.command import _make_folder

    target = out_dir / name
    _make_folder(target)
    figures = {"performance": "performance_profile.png", "epochs": "epochs_profile.png"}
    labels = list(dict.fromkeys(" = ".join(r) for t in tables for r in t.rows))
    performance_profile_figure(profile_ratios(tables), labels, target / figures["performance"],
                               tau_max=TAU_MAX, title=f"Performance profile ({name})")
    ratios, epochs = epochs_profile(tables, by_name, margin)
    performance_profile_figure(
        ratios, labels, target / figures["epochs"], tau_max=EPOCH_TAU_MAX,
        title=f"Epochs to the validation target ({name})",
        xlabel="τ (epochs to the target, against the fastest)",
        ylabel="share of experiments within τ of the fastest")
    atomic_write_text(target / "per_seed.csv",
                      per_seed_csv([(res.name, res) for res in originals]))
    path = target / "compare.md"
    atomic_write_text(path, render(name, results, tables, order, figures, settings, margin,
                                   epochs, command))
    return path


def compare_command(args) -> str:
    """The command that writes this comparison again, with paths as ``bench report``'s
    regenerate line gives them (no folder of the machine that made it)."""
    from bench.report.command import relative

    words = ["python -m bench compare", *map(shlex.quote, args.experiments), "--results",
             relative(Path(args.results)), "--out", relative(Path(args.out)), "--name",
             shlex.quote(args.name)]
    if args.settings:
        words += ["--settings", args.settings]
    if getattr(args, "margin", None) is not None:
        words += ["--margin", f"{args.margin:g}"]
    return " ".join(words)


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
    margin = common_margin(results, results_dir, getattr(args, "margin", None))
    path = write_compare(results, Path(args.out), args.name, settings, margin,
                         compare_command(args))
    print(f"wrote {path}, per_seed.csv and the profiles", file=sys.stderr)
    return 0
