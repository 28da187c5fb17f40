"""The grid of runs: schedules x budgets x seeds, folded into training jobs.

A schedule whose lr path does not depend on the budget (Plateau, fixed milestones, constant,
schedule-free) is trained once per seed to the longest budget; its shorter budgets are read
off that run's prefix, which is exactly what a standalone shorter run would have recorded.
A budget-dependent schedule (cosine, one-cycle, scaled milestones, WSD) gets one job per
budget.
"""

from __future__ import annotations

from dataclasses import dataclass

from schedules import NamedSchedule


@dataclass(frozen=True)
class Job:
    """One training run and the budgets that are read off it."""

    schedule: str
    seed: int
    epochs: int
    budgets: tuple[int, ...]
    shared_prefix: bool
    # The key of the job of the same unit this one may fork from (``bench.trunks``), and
    # the epochs it is planned to share with it (0 where a metric decides, as it trains).
    trunk: str | None = None
    trunk_epochs: int = 0

    @property
    def key(self) -> str:
        """Folder of the run inside ``<experiment>/runs/``."""
        if self.shared_prefix:
            return f"{self.schedule}/seed{self.seed}"
        return f"{self.schedule}/e{self.epochs}-seed{self.seed}"

    @property
    def label(self) -> str:
        budgets = "/".join(map(str, self.budgets))
        return f"{self.schedule} seed {self.seed} ({budgets} ep)"


def fold(schedule: str, budget_dependent: bool, seed: int, budgets) -> list[Job]:
    """The folding rule, the one place it is written: the jobs that hold one schedule's
    cells of one seed."""
    budgets = tuple(sorted(budgets))
    if budget_dependent:
        return [Job(schedule, seed, b, (b,), False) for b in budgets]
    return [Job(schedule, seed, budgets[-1], budgets, True)]


Cell = tuple[str, int, int]  # (schedule, budget, seed)


def grid_cells(schedules: list[NamedSchedule], budgets: tuple[int, ...],
               seeds: tuple[int, ...]) -> list[Cell]:
    """Every (schedule, budget, seed) of a full grid."""
    return [(s.name, b, seed) for s in schedules for b in budgets for seed in seeds]


def plan_cells(schedules: list[NamedSchedule], cells: list[Cell]) -> list[Job]:
    """The jobs that hold ``cells`` (any subset of a grid), in a stable order: by seed, then
    schedule, then budget.

    Seed-major order means an interrupted grid has complete schedule comparisons for the
    first seeds rather than every seed of the first schedules.
    """
    budgets: dict[tuple[int, str], set[int]] = {}
    for name, budget, seed in cells:
        budgets.setdefault((seed, name), set()).add(budget)
    seeds = list(dict.fromkeys(seed for _, _, seed in cells))
    return [job for seed in seeds for item in schedules if (seed, item.name) in budgets
            for job in fold(item.name, item.budget_dependent, seed, budgets[(seed, item.name)])]


def plan_jobs(schedules: list[NamedSchedule], budgets: tuple[int, ...],
              seeds: tuple[int, ...]) -> list[Job]:
    """The jobs of the full grid ``schedules x budgets x seeds`` (see ``plan_cells``)."""
    return plan_cells(schedules, grid_cells(schedules, budgets, seeds))


def shard(jobs: list[Job], spec: str) -> list[Job]:
    """``"I/N"``: the I-th of N deterministic, disjoint slices of a job list (1-based).

    Jobs are dealt round-robin so every shard gets a similar mix of long and short runs.
    """
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ValueError(f"--shard must look like 'I/N', got {spec!r}") from None
    if not (n >= 1 and 1 <= i <= n):
        raise ValueError(f"--shard {spec}: need 1 <= I <= N")
    return jobs[i - 1::n]


def units(jobs: list[Job], fuse: int) -> list[list[Job]]:
    """Jobs grouped for execution: singletons, or up to ``fuse`` jobs of equal length.

    Fused members advance in lock step, so only jobs that train the same number of epochs
    share a unit; the order of first appearance is kept.
    """
    if fuse <= 1:
        return [[job] for job in jobs]
    groups: dict[int, list[list[Job]]] = {}
    order: list[list[Job]] = []
    for job in jobs:
        open_groups = groups.setdefault(job.epochs, [])
        if not open_groups or len(open_groups[-1]) == fuse:
            open_groups.append([])
            order.append(open_groups[-1])
        open_groups[-1].append(job)
    return order


def longest_first(work: list[list[Job]], done: dict[str, int]) -> list[list[Job]]:
    """Units ordered by the epochs they have left to train, most first (ties keep their
    order), so that with several workers the long trees start first and the grid does not
    end on one worker training a long unit while the others idle. Epochs a job will fork
    from its trunk are not counted; epochs done already (a resumed grid) are not either.
    """
    def left(unit: list[Job]) -> int:
        return sum(max(job.epochs - max(done.get(job.key, 0), job.trunk_epochs), 0)
                   for job in unit)

    return sorted(work, key=left, reverse=True)
