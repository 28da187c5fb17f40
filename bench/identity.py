"""What makes a number: the identity of an experiment and of each of its runs.

An experiment's identity (``experiment.json``) is what every run shares: the dataset
settings, the model (its import path, resolved options, a hash of its source file and of
every other file of the user's its import loaded, and the versions of the installed packages
those files import) and the training settings. A run's payload (``config.json``) adds the
schedule, the seed and the epochs; its ``config_hash`` guards reuse: a run whose recorded
hash differs from the current one is stale and is redone from epoch 0, never resumed from
its checkpoint, with a note that names what changed (``describe_changes``).

Two kinds of keys: *settings* (a dataset or model name, an option, a training setting) say
which experiment this is, and a folder holding another one is refused; *versions*
(``VERSION_KEYS``: the model's source hashes and package versions, the data's content hash
and the facts a manifest decides: name, units, interval, missing-value marker) say which
code and which data made the numbers, and a change makes every run of the folder stale
(and, for the data, its baselines).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from bench.config import to_dict
from bench.data import load_data
from bench.plan import Job
from bench.profile import Profile
from schedules import NamedSchedule
from stforecast.models import resolve_model

VERSION_KEYS = ("model.source_sha256", "model.sources", "model.packages", "dataset.content",
                "dataset.options")


def is_version(key: str) -> bool:
    """Whether a dotted key names a version (code or data content), not a setting."""
    return any(key == v or key.startswith(v + ".") for v in VERSION_KEYS)


def dataset_identity(profile: Profile) -> dict[str, Any]:
    """The dataset settings, and the content they loaded (where the files live does not
    count): a content hash of the arrays and the facts a manifest decides."""
    ds = load_data(profile, torch.device("cpu")).dataset
    settings = {k: v for k, v in to_dict(profile.dataset).items() if k != "data_dir"}
    return {**settings, "content": {"sha256": ds.fingerprint, "name": ds.name,
                                    "units": ds.units, "interval_minutes": ds.interval_minutes,
                                    "null_value": ds.null_text}}


def model_identity(profile: Profile) -> dict[str, Any]:
    """Import path, resolved options and the hash of every source file of the profile's model.

    ``source_sha256`` hashes the file that defines the class; ``sources`` (present when
    there are any) names every other file of the user's that the model's import loaded, with
    its hash, and ``packages`` the installed packages its files import, with their versions
    (beyond the suite's own dependencies). All three are versions: a change makes the runs
    stale, with a note naming the file or package.
    """
    entry = resolve_model(profile.model.name)
    out = {"name": profile.model.name if entry.origin != "file" else entry.import_path,
           "import_path": entry.import_path, "origin": entry.origin,
           "options": to_dict(profile.model.options), "source_sha256": entry.source_sha256()}
    # Left out when empty, so that the identity of a model made of one file (every earlier
    # experiment's) keeps its hash.
    sources = entry.sources_sha256()
    if sources:
        out["sources"] = sources
    packages = entry.package_versions()
    if packages:
        out["packages"] = packages
    return out


# Training settings added after results were first written, with the value every earlier run
# trained under. At that value a setting is left out of the identity, so earlier runs keep
# their hash and are reused; any other value counts like every setting.
LATER_TRAIN_SETTINGS = {"tf32": False, "flush_denormal": False}


def train_identity(profile: Profile) -> dict[str, Any]:
    """The training settings that say which experiment this is."""
    return {k: v for k, v in to_dict(profile.train).items()
            if not (k in LATER_TRAIN_SETTINGS and v is LATER_TRAIN_SETTINGS[k])}


def experiment_identity(profile: Profile) -> dict[str, Any]:
    """What every run of an experiment shares (``experiment.json``)."""
    return {"dataset": dataset_identity(profile), "model": model_identity(profile),
            "train": train_identity(profile)}


def run_payload(profile: Profile, item: NamedSchedule, job: Job) -> dict[str, Any]:
    """The resolved config that determines a run's records; its hash guards reuse.

    Budgets read off a shared prefix are not part of it: extending such a run to a longer
    budget continues the same lr path.
    """
    return {**experiment_identity(profile),
            "schedule": {"name": item.name, **item.spec.to_dict()},
            "seed": job.seed,
            "epochs": None if job.shared_prefix else job.epochs}


def config_hash(payload: dict) -> str:
    """Stable short hash of a resolved run config."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested records."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            out += changes(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if _canonical(old) == _canonical(new) else [prefix.rstrip(".")]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def lookup(record: Any, dotted: str) -> Any:
    """The value at a dotted key; a key that itself holds dots (a file name such as
    ``model.sources.layers.py``) is matched whole, the longest first."""
    parts = dotted.split(".")
    i = 0
    while i < len(parts):
        if not isinstance(record, dict):
            return None
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in record:
                record, i = record[key], j
                break
        else:
            return None
    return record


def describe_changes(old: dict, new: dict, keys: list[str] | None = None) -> str:
    """``model.source_sha256 1a2b3c4d → 5e6f7a8b; schedule.lr 0.001 → 0.002``."""
    keys = changes(old, new) if keys is None else keys
    return "; ".join(f"{k} {_short(lookup(old, k))} → {_short(lookup(new, k))}" for k in keys)


def _short(value: Any) -> str:
    if isinstance(value, str) and len(value) >= 32 and all(c in "0123456789abcdef"
                                                           for c in value):
        return value[:8]  # a hash
    text = _canonical(value) if isinstance(value, (dict, list)) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def split_changes(old: dict, new: dict) -> tuple[list[str], list[str]]:
    """(settings that differ, versions that differ) between two experiment records."""
    diff = changes(old, new)
    return [k for k in diff if not is_version(k)], [k for k in diff if is_version(k)]
