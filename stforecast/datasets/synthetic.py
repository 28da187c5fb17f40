"""``synthetic-la``: an embedded METR-LA-like traffic-speed series, generated on the fly.

At the defaults (``nodes=207, days=14``): 4,032 steps (``days * 288``) x 207 sensors x 1
feature (speed in mph), 5-minute sampling, about 8 % of readings missing and stored as 0.0
(``null_value``), as METR-LA stores them (METR-LA: 8.1 %). The adjacency is ``[N, N]``
float32 and directed, built from road distance with DCRNN's Gaussian kernel. The series
starts on Thursday 2012-03-01 00:00, METR-LA's first step, so that splits fall on the same
weekdays; ``days=119`` gives METR-LA's full length (34,272 steps).

Why it exists: the benchmark must run anywhere without downloading data, and the schedules it
compares must face what makes real traffic hard. The model of traffic, one line per part
(``docs/synthetic-la.md`` has the details and a side-by-side comparison with real data):

- **Road network.** Straight freeways at spread-out angles cross one another; each has two
  carriageways (directions) with sensors about 1 km apart. Where two freeways cross, ramps
  join every carriageway of one to every carriageway of the other. The adjacency is
  ``exp(-(d / 2 km)^2)`` of the directed road distance ``d``, weights below 0.1 cut.
- **Demand.** Per carriageway, relative to a heavy weekday peak: weekdays have a morning and
  an evening peak sized by the direction of the commute, weekends a lighter midday hump.
  Each day scales and shifts the profile slightly; slow fluctuations ride on top.
- **Free flow.** Each sensor has its own free-flow speed (mostly 60-70 mph, a few slow
  sections); speed sags a little as demand rises. Readings saturate softly below 70 mph.
- **Recurrent bottlenecks.** Merges past interchanges and lane drops have a capacity. When
  demand exceeds it a queue grows backward, and it drains when demand falls. A sensor is
  congested once the queue's tail has passed it, so congestion reaches upstream sensors
  minutes after the bottleneck. Queues spill back through ramps onto feeding freeways, weakened.
- **Stop-and-go waves.** Speeds inside a queue oscillate; each oscillation leaves the
  bottleneck and travels upstream at about 19 km/h.
- **Incidents.** Random in place and time (likelier in heavy traffic): capacity is cut for
  tens of minutes, the site slows sharply, a queue grows upstream and clears afterwards.
- **Night work zones.** Lane closures on most weeknights slow a few sites between midnight
  and 5 am, the dip real weekday data show around 3 am.
- **Sensor effects.** Heteroscedastic noise (larger with few vehicles and in congestion, a
  few very noisy sensors) and a slow per-sensor drift lasting hours.
- **Missing readings.** Isolated drops, multi-hour sensor outages and a few whole-network
  outage steps, stored as 0.0.

Everything is drawn from ``numpy.random.default_rng(seed)`` in a fixed order, so the same
arguments give bit-identical arrays. Work is vectorised over sensors and time; Python loops
run over carriageways, bottlenecks, incidents and work-zone nights, and over time steps
only in recursions on small ``[k]`` vectors.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from stforecast.datasets.base import DataError, Dataset, time_index
from stforecast.datasets.registry import DatasetEntry, register_dataset
from stforecast.graph import gaussian_kernel

GENERATOR_VERSION = 1  # bump when the same arguments would give different values
STEPS_PER_DAY = 288  # 5-minute steps
DEFAULT_NODES, DEFAULT_DAYS = 207, 14  # METR-LA's sensor count; two weeks
DEFAULT_START = "2012-03-01 00:00"  # METR-LA's first step, a Thursday
MISSING_SHARE = 0.08  # METR-LA: 8.1 % of readings are 0

# Road network
SPACING_KM = 1.0  # mean gap between consecutive sensors on a carriageway
MAX_GAP_KM = 2.5  # largest gap, so every sensor has a neighbour with weight >= 0.1
SENSORS_PER_FREEWAY = 30  # both directions; sets how many freeways a size gets
SIGMA_KM = 2.0  # kernel bandwidth: weights reach 0.1 at 3 km
RAMP_KM = 0.4  # length of an interchange ramp
REACH_KM = 12.0  # longest queue; road distances beyond it are not needed

# Demand (1.0 is about a heavy weekday peak)
PLATEAU = 0.58  # weekday daytime demand above the night level of 0.12
PEAK = (0.03, 0.38)  # a commute peak adds PEAK[0] + PEAK[1] * (its share of the commute)
AM_AT, PM_AT = 7.5, 16.9  # mean peak hours; each carriageway differs by up to 0.6 / 0.8 h
DAY_SCALE_SD = 0.01  # day-to-day demand scale, network-wide and per carriageway (log sd)
DAY_SHIFT_H = 0.12  # day-to-day shift of the profile, hours (half of it per carriageway)
WOBBLE_SD = 0.015  # slow within-day fluctuation (AR(1), about 3 h memory)

# Free flow
V_TOP = 69.5  # free-flow speeds are V_TOP minus a Gamma(1.5, 3) draw
SAG = (0.0, 0.05)  # share of speed lost to heavy (demand 1.0) but uncongested traffic
MPH_CAP = 70.0  # METR-LA speeds never exceed 70 mph

# Recurrent bottlenecks and their queues
SENSORS_PER_BOTTLENECK = 4
CAPACITY = (0.76, 0.98)  # capacity as a share of the carriageway's weekday peak demand
GROWTH_KM = (1.0, 2.5)  # km of queue per step per unit of excess demand
LONGEST_KM = (3.0, 12.0)  # a queue stops growing here (drivers divert)
LOCAL_DAY_SD = 0.008  # extra day-to-day demand scale per bottleneck (log sd)
DRAIN = 2.0  # a queue shrinks this much faster per unit of spare capacity than it grows
QUEUE_TAIL_KM = 0.8  # length over which speed falls as a queue's tail passes
WAVE_MPH = (3.0, 8.0)  # stop-and-go amplitude inside a queue
WAVE_KM_PER_STEP = 1.6  # stop-and-go waves travel upstream at about 19 km/h
RAMP_SPILLBACK = 0.4  # share of a queue's slowdown that reaches a feeding freeway ...
SPILL_KM = 3.0  # ... fading with distance on this scale

# Incidents and work zones
INCIDENTS_PER_SENSOR_DAY = 0.05
INCIDENT_GROWTH_KM = 3.0  # km of queue per step per unit of excess demand
SENSORS_PER_WORK_ZONE = 8

# Sensor effects
NOISE_MPH = 1.75  # median noise scale in heavy traffic; about twice that at night
DRIFT_MPH = 2.0  # slow per-sensor deviation ...
DRIFT_RHO = 0.995  # ... with lag-1 correlation giving about 17 h of memory


def generate(nodes: int = DEFAULT_NODES, days: int = DEFAULT_DAYS, seed: int = 0,
             start: str = DEFAULT_START,
             missing_share: float = MISSING_SHARE) -> Dataset:
    """A METR-LA-like dataset: ``days * 288`` 5-minute speeds at ``nodes`` sensors.

    ``start`` is the first timestamp; weekdays and weekends follow the calendar from there.
    ``missing_share`` is the target share of readings stored as 0.0 (0 gives a complete
    series). The same arguments give bit-identical arrays.
    """
    try:
        nodes, days, seed = operator.index(nodes), operator.index(days), operator.index(seed)
    except TypeError:
        raise DataError(f"synthetic-la: nodes, days and seed must be integers, got "
                        f"{nodes!r}, {days!r}, {seed!r}") from None
    if nodes < 4:
        raise DataError(f"synthetic-la: nodes={nodes} is too small (need at least 4)")
    if seed < 0:
        raise DataError(f"synthetic-la: seed={seed} must be >= 0")
    if days < 1:
        raise DataError(f"synthetic-la: days={days} must be at least 1")
    if not 0.0 <= missing_share < 0.5:
        raise DataError(f"synthetic-la: missing_share={missing_share} must be in [0, 0.5)")
    try:
        timestamps = time_index(start, days * STEPS_PER_DAY, 5)
    except ValueError as exc:
        raise DataError(f"synthetic-la: start={start!r} is not a date-time ({exc})") from exc
    rng = np.random.default_rng(seed)
    steps = len(timestamps)
    net = road_network(nodes, rng)
    commute = Commute.draw(net.num_carriageways // 2, rng)
    dem = demand(timestamps, commute, rng)  # [T, C]
    dem_s = dem[:, net.carriageway]  # [T, N] demand passing each sensor

    # Free flow, sagging with demand.
    v_free = V_TOP - rng.gamma(1.5, 3.0, nodes)
    slow = rng.random(nodes) < 0.08
    v_free[slow] = rng.uniform(48.0, 58.0, slow.sum())
    sag = rng.uniform(*SAG, nodes)
    speed = v_free * (1.0 - sag * dem_s ** 4)  # [T, N]
    depth = np.zeros((steps, nodes))  # share of speed lost to congestion, for the noise level

    heads, capacity = bottlenecks(speed, depth, net, commute, dem, timestamps, rng)
    n_inc = incidents(speed, depth, net, dem, capacity, rng)
    work_zones(speed, depth, net, timestamps, rng)

    # Sensor effects: noise grows as traffic thins (fewer vehicles per reading) and in queues.
    sigma = rng.lognormal(np.log(NOISE_MPH), 0.35, nodes)
    noisy = rng.random(nodes) < 0.05
    sigma[noisy] *= rng.uniform(2.0, 3.5, noisy.sum())
    level = sigma * (0.3 + 0.7 / np.sqrt(np.maximum(dem_s, 0.08))) * (1.0 + depth)
    noise = (0.8 * rng.standard_normal((steps, nodes))
             + 0.6 * _ar1(rng, steps, nodes, rho=0.85, std=1.0)) * level
    drift = _ar1(rng, steps, nodes, rho=DRIFT_RHO, std=DRIFT_MPH)
    values = np.clip(_soft_cap(speed + noise + drift), 3.0, MPH_CAP)
    values[missing_mask(steps, nodes, missing_share, rng)] = 0.0

    order = rng.permutation(nodes)  # real sensor ids follow no road order; neither do these
    adjacency = gaussian_kernel(net.distance[np.ix_(order, order)], threshold=0.1,
                                sigma=SIGMA_KM)
    return Dataset(
        name="synthetic-la",
        values=values[:, order, None].astype(np.float32),
        adjacency=adjacency,
        timestamps=timestamps,
        interval_minutes=5,
        null_value=0.0,
        sensor_ids=tuple(net.names[i] for i in order),
        units="mph",
        meta={"source": f"synthetic-la (generated: nodes={nodes}, days={days}, seed={seed})",
              "generator_version": GENERATOR_VERSION, "nodes": nodes, "days": days,
              "seed": seed, "start": start, "missing_share_target": missing_share,
              "freeways": net.num_carriageways // 2, "bottlenecks": len(heads),
              "incidents": n_inc},
    )


# --------------------------------------------------------------------------------------
# Road network


@dataclass(frozen=True)
class RoadNetwork:
    """Sensors on freeway carriageways and the directed road distances between them.

    Sensors are grouped by carriageway and ordered along the direction of travel.
    ``carriageway[i]`` is sensor ``i``'s carriageway (freeway ``c // 2``), ``along[i]`` its
    position in km along it in the direction of travel, ``xy`` its map position in km.
    ``distance[i, j]`` is the road distance in km from ``i`` to ``j`` (``inf`` when ``j``
    cannot be reached from ``i`` within ``REACH_KM``); ``mainline[i, j]`` says whether ``j``
    lies ahead of ``i`` on the same carriageway. ``merges`` are the first sensors past the
    points where interchange ramps join.
    """

    carriageway: np.ndarray
    along: np.ndarray
    xy: np.ndarray
    distance: np.ndarray
    mainline: np.ndarray
    merges: np.ndarray
    names: tuple[str, ...]

    @property
    def num_carriageways(self) -> int:
        return int(self.carriageway.max()) + 1


def road_network(nodes: int, rng: np.random.Generator) -> RoadNetwork:
    """Lay out freeways, put ``nodes`` sensors on their carriageways, join them at crossings.

    The number of freeways grows with ``nodes`` (about ``SENSORS_PER_FREEWAY`` sensors
    each), so sensor spacing, and with it the graph's neighbourhood size, stays the same at
    every size.
    """
    n_fwy = max(1, min(max(2, round(nodes / SENSORS_PER_FREEWAY)), nodes // 4))
    per_fwy = 4 + _apportion(nodes - 4 * n_fwy, rng.uniform(0.6, 1.4, n_fwy))
    angle = np.pi * np.arange(n_fwy) / n_fwy + rng.normal(0.0, 0.12, n_fwy)
    unit = np.stack([np.cos(angle), np.sin(angle)], axis=1)  # [F, 2] direction of travel "a"
    # Freeways cross near the middle; a larger network spreads over a larger region.
    spread = 0.06 * SPACING_KM * per_fwy.mean() * max(1.0, n_fwy / 7)
    centre = rng.normal(0.0, spread, (n_fwy, 2))

    # Sensor positions, u = km from the freeway's start in direction "a".
    u_of, length = [], np.zeros(n_fwy)
    for f in range(n_fwy):
        for n_c in (per_fwy[f] // 2, per_fwy[f] - per_fwy[f] // 2):
            gaps = np.clip(SPACING_KM * rng.gamma(4.0, 0.25, n_c + 1), 0.3, MAX_GAP_KM)
            u_of.append(np.cumsum(gaps)[:-1])
            length[f] = max(length[f], gaps.sum())
    carriageway, along, xy, names = [], [], [], []
    for c, u in enumerate(u_of):
        f, backward = divmod(c, 2)
        s = length[f] - u[::-1] if backward else u  # km along the direction of travel
        u_t = length[f] - s if backward else s
        normal = np.array([-unit[f, 1], unit[f, 0]]) * (0.03 if backward else -0.03)
        carriageway.append(np.full(len(s), c))
        along.append(s)
        xy.append(centre[f] + (u_t - length[f] / 2)[:, None] * unit[f] + normal)
        names.extend(f"fwy{f}{'ab'[backward]}-{k:02d}" for k in range(len(s)))
    carriageway = np.concatenate(carriageway)
    along = np.concatenate(along)
    xy = np.concatenate(xy)
    first = np.searchsorted(carriageway, np.arange(2 * n_fwy))
    last = np.append(first[1:], nodes)

    # Edges: consecutive sensors along each carriageway, then interchange ramps.
    src, dst, cost, merges = [], [], [], []
    for c in range(2 * n_fwy):
        idx = np.arange(first[c], last[c])
        src.extend(idx[:-1])
        dst.extend(idx[1:])
        cost.extend(np.diff(along[idx]))
    for f in range(n_fwy):
        for g in range(f + 1, n_fwy):
            hit = _crossing(centre[f], unit[f], length[f], centre[g], unit[g], length[g])
            if hit is None:
                continue
            for (a, u_a), (b, u_b) in (((f, hit[0]), (g, hit[1])), ((g, hit[1]), (f, hit[0]))):
                for ca in (2 * a, 2 * a + 1):
                    s_a = length[a] - u_a if ca % 2 else u_a  # the crossing, along ca
                    before = np.flatnonzero(along[first[ca]:last[ca]] < s_a)
                    if not len(before):
                        continue
                    i = first[ca] + before[-1]
                    for cb in (2 * b, 2 * b + 1):
                        s_b = length[b] - u_b if cb % 2 else u_b
                        after = np.flatnonzero(along[first[cb]:last[cb]] > s_b)
                        if not len(after):
                            continue
                        j = first[cb] + after[0]
                        src.append(i)
                        dst.append(j)
                        cost.append((s_a - along[i]) + RAMP_KM + (along[j] - s_b))
                        merges.append(j)
    distance = _bounded_distances(nodes, np.array(src), np.array(dst), np.array(cost),
                                  REACH_KM)
    ahead = along[None, :] - along[:, None]
    mainline = (carriageway[:, None] == carriageway[None, :]) & (ahead >= 0)
    return RoadNetwork(carriageway=carriageway, along=along, xy=xy, distance=distance,
                       mainline=mainline, merges=np.unique(np.array(merges, dtype=np.int64)),
                       names=tuple(names))


def _apportion(total: int, share: np.ndarray) -> np.ndarray:
    """Non-negative integers proportional to ``share`` that add up to ``total``."""
    raw = total * share / share.sum()
    out = np.floor(raw).astype(np.int64)
    out[np.argsort(out - raw)[: total - out.sum()]] += 1  # largest remainders first
    return out


def _crossing(c1: np.ndarray, e1: np.ndarray, l1: float, c2: np.ndarray, e2: np.ndarray,
              l2: float) -> tuple[float, float] | None:
    """Where two freeway segments cross, as km from each one's start; None if they do not."""
    m = np.stack([e1, -e2], axis=1)
    if abs(np.linalg.det(m)) < 1e-6:
        return None
    a, b = np.linalg.solve(m, c2 - c1)  # offsets from each segment's centre
    if abs(a) >= l1 / 2 - 0.2 or abs(b) >= l2 / 2 - 0.2:
        return None
    return float(a + l1 / 2), float(b + l2 / 2)


def _bounded_distances(n: int, src: np.ndarray, dst: np.ndarray, cost: np.ndarray,
                       reach: float) -> np.ndarray:
    """All-pairs shortest road distance up to ``reach`` km (Bellman-Ford from every source).

    Edges are relaxed in groups whose heads are distinct, so each group is one vectorised
    update of ``[N, group]`` columns. Paths longer than ``reach`` are dropped, so the rounds
    needed are the most edges a path within reach has, not ``n``.
    """
    d = np.full((n, n), np.inf)
    np.fill_diagonal(d, 0.0)
    order = np.argsort(dst, kind="stable")
    first_of_head = np.searchsorted(dst[order], dst[order])
    rank = np.empty(len(dst), dtype=np.int64)
    rank[order] = np.arange(len(dst)) - first_of_head  # k-th edge into the same head
    groups = [np.flatnonzero(rank == r) for r in range(int(rank.max(initial=-1)) + 1)]
    changed = True
    while changed:
        changed = False
        for g in groups:
            cand = d[:, src[g]] + cost[g]  # [N, G]: distance to each head through its edge
            cand[cand > reach] = np.inf
            better = cand < d[:, dst[g]]
            if better.any():
                d[:, dst[g]] = np.where(better, cand, d[:, dst[g]])
                changed = True
    return d


# --------------------------------------------------------------------------------------
# Demand


@dataclass(frozen=True)
class Commute:
    """Per carriageway ``[C]``: how much of each commute peak it carries, and when.

    ``am_share`` in [0, 1] weighs the morning peak; the evening peak gets the complement, as
    people drive back the way they came. The second carriageway of a freeway mirrors the
    first. Peak times and widths are in hours.
    """

    am_share: np.ndarray
    am_at: np.ndarray
    pm_at: np.ndarray
    am_width: np.ndarray
    pm_width: np.ndarray

    @classmethod
    def draw(cls, n_fwy: int, rng: np.random.Generator) -> Commute:
        share = rng.beta(0.25, 0.25, n_fwy)  # most freeways carry the commute one way
        n_cw = 2 * n_fwy
        return cls(
            am_share=np.stack([share, 1.0 - share], axis=1).ravel(),
            am_at=AM_AT + rng.uniform(-0.6, 0.6, n_cw),
            pm_at=PM_AT + rng.uniform(-0.8, 0.8, n_cw),
            am_width=1.2 * rng.uniform(0.8, 1.25, n_cw),
            pm_width=1.7 * rng.uniform(0.8, 1.25, n_cw),
        )


def _weekday_profile(h: np.ndarray, c: Commute) -> np.ndarray:
    """Nominal weekday demand at hour ``h`` (``[..., C]``): a daytime plateau plus peaks."""
    am = PEAK[0] + PEAK[1] * c.am_share
    pm = PEAK[0] + PEAK[1] * (1.0 - c.am_share)
    return (0.12 + PLATEAU * _rise(h, 5.5, 0.35) * (1 - _rise(h, 21.0, 0.7))
            + am * _bump(h, c.am_at, c.am_width) + pm * _bump(h, c.pm_at, c.pm_width))


def _weekend_profile(h: np.ndarray) -> np.ndarray:
    """Nominal weekend demand: a later start, no commute peaks, a broad midday hump."""
    return (0.14 + 0.56 * _rise(h, 8.5, 0.7) * (1 - _rise(h, 22.5, 0.8))
            + 0.15 * _bump(h, 14.5, 3.0))


def peak_demand(commute: Commute) -> np.ndarray:
    """``[C]`` the highest nominal weekday demand of each carriageway."""
    h = np.arange(STEPS_PER_DAY)[:, None] / 12.0
    return _weekday_profile(h, commute).max(axis=0)


def demand(timestamps: np.ndarray, commute: Commute, rng: np.random.Generator) -> np.ndarray:
    """``[T, C]`` relative demand per carriageway, with day-to-day and within-day variation."""
    hour, day, dow = _calendar(timestamps)
    n_days, n_cw = int(day[-1]) + 1, len(commute.am_share)
    scale = np.exp(rng.normal(0.0, DAY_SCALE_SD, (n_days, 1))
                   + rng.normal(0.0, DAY_SCALE_SD, (n_days, n_cw)))
    shift = (rng.normal(0.0, DAY_SHIFT_H, (n_days, 1))
             + rng.normal(0.0, DAY_SHIFT_H / 2, (n_days, n_cw)))
    h = hour[:, None] - shift[day]  # [T, C]
    weekend = _weekend_profile(h) * np.where((dow == 6)[:, None], 0.94, 1.0)  # Sunday lighter
    base = np.where((dow >= 5)[:, None], weekend, _weekday_profile(h, commute))
    wobble = _ar1(rng, len(hour), n_cw, rho=0.97, std=WOBBLE_SD)
    return np.clip(base * scale[day] * (1.0 + wobble), 0.03, None)


# --------------------------------------------------------------------------------------
# Congestion


def bottlenecks(speed: np.ndarray, depth: np.ndarray, net: RoadNetwork, commute: Commute,
                dem: np.ndarray, timestamps: np.ndarray, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """Apply recurrent bottleneck queues in place; return their head sensors and ``[N]``
    capacities (demand units; high where no bottleneck is).

    Capacity is a share of the carriageway's usual weekday peak, so most bottlenecks queue
    in their carriageway's commute peak and some at other times too.
    """
    steps, n = speed.shape
    heads = bottleneck_sites(net, max(1, round(n / SENSORS_PER_BOTTLENECK)), rng)
    k = len(heads)
    threshold = peak_demand(commute)[net.carriageway[heads]] * _spread(rng, k, *CAPACITY)
    growth = rng.uniform(*GROWTH_KM, k)
    longest = _spread(rng, k, *LONGEST_KM)
    offset = rng.uniform(0.1, 0.6, k)  # the bottleneck lies this far past its head sensor
    v_queue = rng.uniform(15.0, 40.0, k)
    day = _calendar(timestamps)[1]
    local = (np.exp(rng.normal(0.0, LOCAL_DAY_SD, (int(day[-1]) + 1, k)))[day]
             * (1.0 + _ar1(rng, steps, k, rho=0.97, std=WOBBLE_SD)))  # [T, B]
    queues = queue_length(dem[:, net.carriageway[heads]] * local - threshold, growth, longest)
    wave_amp = rng.uniform(*WAVE_MPH, k)
    waves = _ar1(rng, steps + 16, k, rho=0.6, std=1.0)  # 16 leading steps for the delays
    for b, h in enumerate(heads):
        _congest(speed, depth, net, h, offset[b], queues[:, b], 0, v_queue[b], wave_amp[b],
                 waves[:, b], rng)
    capacity = np.full(n, 1.1)
    capacity[heads] = np.minimum(capacity[heads], threshold)
    return heads, capacity


def bottleneck_sites(net: RoadNetwork, count: int, rng: np.random.Generator) -> np.ndarray:
    """Head sensors of about ``count`` recurrent bottlenecks, spread evenly over the network.

    Each carriageway gets a share proportional to its sensors and is cut into that many
    stretches; each stretch holds one bottleneck, at a merge past an interchange if it has
    one (where real recurrent bottlenecks sit), else at a random sensor (a lane drop).
    Spreading them keeps the congested share steady from seed to seed.
    """
    sizes = np.bincount(net.carriageway)
    first = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    is_merge = np.zeros(len(net.carriageway), dtype=bool)
    is_merge[net.merges] = True
    heads = []
    for c, k in enumerate(_apportion(count, sizes.astype(np.float64))):
        if k == 0:
            continue
        for stretch in np.array_split(np.arange(first[c], first[c] + sizes[c]), k):
            if len(stretch):
                pool = stretch[is_merge[stretch]] if is_merge[stretch].any() else stretch
                heads.append(rng.choice(pool))
    return np.array(heads, dtype=np.int64)


def queue_length(excess: np.ndarray, growth: np.ndarray, longest: np.ndarray) -> np.ndarray:
    """``[T, B]`` queue lengths in km behind bottlenecks, from ``[T, B]`` excess demand.

    The queue grows by ``growth * excess`` km per step while demand exceeds capacity and
    shrinks ``DRAIN`` times as fast per unit of spare capacity, never below 0 (a Lindley
    recursion). It stops at ``longest`` km: beyond that drivers divert, so excess demand is
    not stored up for hours.
    """
    step = growth * np.where(excess > 0, excess, DRAIN * excess)
    out = np.empty_like(step)
    q = np.zeros(step.shape[1])
    for t in range(len(step)):
        q = np.minimum(np.maximum(q + step[t], 0.0), longest)
        out[t] = q
    return out


def incidents(speed: np.ndarray, depth: np.ndarray, net: RoadNetwork, dem: np.ndarray,
              capacity: np.ndarray, rng: np.random.Generator) -> int:
    """Apply incidents in place and return how many there were.

    An incident cuts capacity at a random sensor to 35-80 % for 10 minutes to 3 hours
    (median 35 min), starting at a time drawn in proportion to demand. The site slows by
    15-45 % while it lasts; a queue grows if demand exceeds the cut capacity (at night it
    rarely does) and drains at normal capacity afterwards.
    """
    steps, n = speed.shape
    count = int(rng.poisson(INCIDENTS_PER_SENSOR_DAY * n * steps / STEPS_PER_DAY))
    where = rng.integers(0, n, count)
    cum = np.cumsum(dem, axis=0)  # [T, C]
    cw = net.carriageway[where]
    when = np.array([np.searchsorted(cum[:, c], u * cum[-1, c])
                     for c, u in zip(cw, rng.random(count), strict=True)], dtype=np.int64)
    when = np.minimum(when, steps - 1)
    lasts = np.clip(np.round(rng.lognormal(np.log(7.0), 0.5, count)), 2, 36).astype(np.int64)
    cut = rng.uniform(0.35, 0.8, count)
    offset = rng.uniform(0.0, 0.8, count)
    v_queue = rng.uniform(8.0, 25.0, count)
    wave_amp = rng.uniform(2.0, 6.0, count)
    rubberneck = rng.uniform(0.15, 0.45, count)
    drain_steps = 48
    for k in range(count):
        h, t0 = where[k], when[k]
        t1 = min(steps, t0 + lasts[k] + drain_steps)
        cap = np.full(t1 - t0, capacity[h])
        cap[: lasts[k]] *= cut[k]
        excess = dem[t0:t1, cw[k]] - cap
        queue = queue_length(excess[:, None], np.full(1, INCIDENT_GROWTH_KM),
                             np.full(1, REACH_KM))[:, 0]
        wave = rng.standard_normal(t1 - t0 + 16)
        _congest(speed, depth, net, h, offset[k], queue, t0, v_queue[k], wave_amp[k], wave,
                 rng)
        stop = min(steps, t0 + lasts[k])
        speed[t0:stop, h] *= 1.0 - rubberneck[k]
        depth[t0:stop, h] = np.maximum(depth[t0:stop, h], rubberneck[k])
    return count


def _congest(speed: np.ndarray, depth: np.ndarray, net: RoadNetwork, head: int,
             offset: float, queue: np.ndarray, t0: int, v_queue: float, wave_amp: float,
             wave: np.ndarray, rng: np.random.Generator) -> None:
    """Slow the sensors a queue covers, in place, from step ``t0`` on.

    ``queue`` is the queue length in km behind a bottleneck ``offset`` km past sensor
    ``head``. A sensor ``d`` km upstream is congested once the queue is longer than ``d``;
    its speed then falls toward about ``v_queue`` plus a stop-and-go wave that left the
    bottleneck ``d / WAVE_KM_PER_STEP`` steps earlier. ``wave`` has 16 leading steps so that
    delayed values exist from the first step.
    """
    up = np.flatnonzero(np.isfinite(net.distance[:, head]))
    d = net.distance[up, head] + offset  # [k] km to the bottleneck
    v_q = v_queue + rng.uniform(-4.0, 4.0, len(up))
    # Only sensors the queue ever reaches, and only steps in which it reaches one of them.
    keep = d < min(REACH_KM, float(queue.max()))
    up, d, v_q = up[keep], d[keep], v_q[keep]
    if not len(up):
        return
    rows = np.flatnonzero(queue > d.min())  # [W]
    spill = np.where(net.mainline[up, head], 1.0, RAMP_SPILLBACK * np.exp(-d / SPILL_KM))
    inside = 1.0 - np.exp(-np.maximum(queue[rows, None] - d, 0.0) / QUEUE_TAIL_KM)  # [W, k]
    lag = np.minimum(d / WAVE_KM_PER_STEP, 15.0)  # steps; linear interpolation between two
    lo = np.floor(lag).astype(np.int64)
    frac = lag - lo
    idx = 16 + rows[:, None] - lo  # [W, k]
    delayed = (1 - frac) * wave[idx] + frac * wave[idx - 1]
    at = (t0 + rows[:, None], up[None, :])
    cur = speed[at]
    target = np.maximum(v_q + wave_amp * delayed, 3.0)
    drop = inside * spill * np.maximum(cur - target, 0.0)
    speed[at] = cur - drop
    depth[at] = np.maximum(depth[at], drop / np.maximum(cur, 1.0))


def work_zones(speed: np.ndarray, depth: np.ndarray, net: RoadNetwork, timestamps: np.ndarray,
               rng: np.random.Generator) -> None:
    """Night lane closures for roadwork, in place: a few sites, most weeknights.

    A site closes lanes from around midnight to before the morning rush on a random share of
    nights, rarely on Friday and Saturday nights. Demand is low then, so no long queue
    forms, but the site and up to 2.5 km upstream slow to 20-50 mph.
    """
    steps, n = speed.shape
    hour, day, dow = _calendar(timestamps)
    n_sites = max(1, round(n / SENSORS_PER_WORK_ZONE))
    sites = rng.choice(n, n_sites, replace=False)
    extent = rng.uniform(0.3, 2.5, n_sites)  # km upstream that slows down
    v_work = rng.uniform(20.0, 50.0, n_sites)
    nightly = rng.uniform(0.4, 0.95, n_sites)
    # Night k is centred on the midnight that starts calendar day k (night 0 precedes day 0).
    n_nights = int(day[-1]) + 2
    evening_dow = (int(dow[0]) - 1 + np.arange(n_nights)) % 7
    weight = np.where((evening_dow == 4) | (evening_dow == 5), 0.15, 1.0)
    active = rng.random((n_nights, n_sites)) < nightly * weight[:, None]
    begin_h = rng.uniform(-1.0, 1.5, (n_nights, n_sites))  # hours from that midnight
    end_h = rng.uniform(3.5, 5.5, (n_nights, n_sites))
    first_midnight = -int(round(hour[0] * 12))  # step index of day 0's midnight
    for k, j in zip(*np.nonzero(active), strict=True):
        midnight = first_midnight + k * STEPS_PER_DAY
        t0 = max(0, midnight + int(begin_h[k, j] * 12))
        t1 = min(steps, midnight + int(end_h[k, j] * 12))
        if t1 <= t0:
            continue
        h = sites[j]
        up = np.flatnonzero(net.mainline[:, h] & (net.distance[:, h] <= extent[j]))
        share = 1.0 - net.distance[up, h] / (extent[j] + 0.5)  # weaker further upstream
        w = np.arange(t1 - t0)
        fade = np.minimum(1.0, np.minimum(w + 1, t1 - t0 - w) / 3.0)  # 15-min set-up
        cur = speed[t0:t1, up]
        drop = fade[:, None] * share * np.maximum(cur - v_work[j], 0.0)
        speed[t0:t1, up] = cur - drop
        depth[t0:t1, up] = np.maximum(depth[t0:t1, up], drop / np.maximum(cur, 1.0))


# --------------------------------------------------------------------------------------
# Missing readings


def missing_mask(steps: int, nodes: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """``[T, N]`` True where a reading is missing, about ``share`` of all readings.

    Three mechanisms, as in METR-LA: whole-network outage steps (5 % of the share), isolated
    drops (20 %) and outages of single sensors lasting hours to days (the rest, median 3 h),
    which hit some sensors far more often than others.
    """
    miss = np.zeros((steps, nodes), dtype=bool)
    if share <= 0:
        return miss
    p_net, p_iso = 0.05 * share, 0.20 * share
    p_out = 1.0 - (1.0 - share) / ((1.0 - p_net) * (1.0 - p_iso))
    n_runs = max(1, round(p_net * steps / 3.5))  # runs of 1-6 steps, 3.5 on average
    for s, length in zip(rng.integers(0, steps, n_runs), rng.integers(1, 7, n_runs),
                         strict=True):
        miss[s:s + length] = True
    miss |= rng.random((steps, nodes)) < p_iso
    # Sensor outages: Poisson starts (also shortly before the series), log-normal lengths.
    median, sd_log = 36.0, 1.1
    mean_len = median * np.exp(0.5 * sd_log ** 2)
    proneness = rng.gamma(1.0, 1.0, nodes)
    cover = np.minimum(p_out * proneness / proneness.mean(), 0.9)
    rate = -np.log1p(-cover) / mean_len  # starts per step giving that coverage
    counts = rng.poisson(rate * (steps + mean_len))
    sensor = np.repeat(np.arange(nodes), counts)
    begin = rng.integers(-int(mean_len), steps, len(sensor))
    length = np.minimum(np.round(rng.lognormal(np.log(median), sd_log, len(sensor))), 864)
    end = np.clip(begin + length.astype(np.int64), 0, steps)
    begin = np.clip(begin, 0, steps)
    marks = np.zeros((steps + 1, nodes), dtype=np.int64)
    np.add.at(marks, (begin, sensor), 1)
    np.add.at(marks, (end, sensor), -1)
    miss |= np.cumsum(marks, axis=0)[:steps] > 0
    return miss


# --------------------------------------------------------------------------------------
# Small utilities


def _calendar(timestamps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hour of day (float), day number from the first day, and weekday (0 = Monday)."""
    day = timestamps.astype("datetime64[D]")
    hour = (timestamps - day).astype("timedelta64[s]").astype(np.float64) / 3600.0
    day_i = day.astype(np.int64)
    return hour, day_i - day_i[0], (day_i + 3) % 7  # 1970-01-01 was a Thursday


def _bump(h: np.ndarray, centre: np.ndarray | float, width: np.ndarray | float) -> np.ndarray:
    return np.exp(-0.5 * np.square((h - centre) / width))


def _rise(h: np.ndarray, at: float, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(h - at) / width))


def _spread(rng: np.random.Generator, count: int, lo: float, hi: float) -> np.ndarray:
    """``count`` values covering ``[lo, hi)`` evenly, in random order (stratified sampling)."""
    return lo + (hi - lo) * (rng.permutation(count) + rng.random(count)) / count


def _ar1(rng: np.random.Generator, steps: int, k: int, rho: float, std: float) -> np.ndarray:
    """``[steps, k]`` stationary AR(1) processes with lag-1 correlation ``rho``."""
    e = rng.standard_normal((steps, k)) * (std * np.sqrt(1.0 - rho * rho))
    out = np.empty_like(e)
    out[0] = rng.standard_normal(k) * std
    for t in range(1, steps):
        out[t] = rho * out[t - 1] + e[t]
    return out


def _soft_cap(v: np.ndarray, cap: float = MPH_CAP, softness: float = 1.2) -> np.ndarray:
    """A smooth ``min(v, cap)``: readings crowd just below the cap instead of piling on it."""
    return cap - softness * np.logaddexp(0.0, (cap - v) / softness)


register_dataset(DatasetEntry(
    name="synthetic-la",
    summary="embedded METR-LA-like generator: freeway graph, rush hours, queues, incidents, "
            "~8% missing (no download)",
    load=generate,
    files=(),
    options=("nodes", "days", "seed", "start", "missing_share"),
))
