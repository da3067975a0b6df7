"""The shipped results: where they live, how to read them, and how to check them.

Records and checkpoints live under :func:`results_dir` (``$MLCOURSE_RESULTS``, or the
``results`` folder shipped inside the package) as ``<dataset>/<spec>/seed<k>.json`` and
``seed<k>.pt``. :func:`load_records` reads the records of a spec, :func:`test_result` turns
one of their tests back into an :class:`~mlcourse.evaluation.EvalResult` (so records are
compared with :func:`~mlcourse.evaluation.paired_difference` like live results), and
:func:`check_record` says what is wrong with a record: another spec's fingerprint, missing
weights, weights that do not fit the learner.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from ..evaluation import EvalResult
from .specs import SPECS, Spec, build_learner
from .studies import STUDIES

__all__ = ["results_dir", "record_paths", "load_records", "test_result", "load_learner", "load_encoder_from",
           "stale_reason", "needs_training", "check_record", "results_size", "shipped_or"]

SHIPPED = Path(__file__).resolve().parents[1] / "results"


def results_dir() -> Path:
    """Folder of the records: ``$MLCOURSE_RESULTS`` or the one shipped with the package."""
    root = os.environ.get("MLCOURSE_RESULTS", "").strip()
    return Path(root).expanduser() if root else SHIPPED


def _dataset(dataset: str | None) -> str:
    from ..data.course import dataset_name

    return dataset or dataset_name()


def record_paths(spec: str, seed: int, *, root: str | Path | None = None, dataset: str | None = None
                 ) -> tuple[Path, Path]:
    """``(weights, record)`` files of ``spec`` trained with ``seed``."""
    folder = Path(root if root is not None else results_dir()) / _dataset(dataset) / spec
    return folder / f"seed{seed}.pt", folder / f"seed{seed}.json"


def load_records(spec: str | Spec, *, root: str | Path | None = None, dataset: str | None = None,
                 quick: bool = False) -> list[dict]:
    """The records of ``spec`` (by seed), full-budget ones only unless ``quick``; ``[]`` if it was never trained."""
    name = spec if isinstance(spec, str) else spec.name
    if name not in SPECS and name not in STUDIES:
        raise ValueError(f"unknown spec {name!r}; the specs are: {', '.join([*SPECS, *STUDIES])}")
    folder = Path(root if root is not None else results_dir()) / _dataset(dataset) / name
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("seed*.json"))]
    return sorted((r for r in records if quick or not r.get("quick")), key=lambda r: r["seed"])


def test_result(record: dict, test: str) -> EvalResult:
    """The test ``test`` (e.g. ``"5-way 1-shot"``) of a record, as an :class:`~mlcourse.evaluation.EvalResult`."""
    if test not in record["tests"]:
        raise KeyError(f"record {record['spec']} seed {record['seed']} has no test {test!r}; "
                       f"it has {sorted(record['tests'])}")
    t = record["tests"][test]
    return EvalResult.from_accuracies(np.asarray(t["per_episode"]), seed=t["seed"], shape=tuple(t["shape"]))


def load_learner(spec: str | Spec, seed: int, *, root: str | Path | None = None, dataset: str | None = None,
                 device: torch.device | str = "cpu") -> torch.nn.Module:
    """The trained learner of a record: the spec's learner with the shipped weights loaded."""
    spec = SPECS[spec] if isinstance(spec, str) else spec
    weights, _ = record_paths(spec.name, seed, root=root, dataset=dataset)
    if not weights.exists():
        raise FileNotFoundError(f"no weights for {spec.name} seed {seed} at {weights}: "
                                f"train them with `mlcourse train {spec.name} --seeds {seed}`")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    head = state.get("classifier.weight")  # a pretrained classifier's head says how many classes it was trained on
    learner = build_learner(spec, n_classes=None if head is None else int(head.shape[0]))
    learner.load_state_dict(state)
    return learner.to(device).eval()


def _encoder_roots(out: str | Path | None) -> list[Path]:
    """Where a spec's source encoder is looked up: ``out`` first, then the results folder."""
    return list(dict.fromkeys(Path(r) for r in (out, results_dir()) if r is not None))


def load_encoder_from(learner: torch.nn.Module, spec: Spec, seed: int, *, quick: bool = False,
                      out: str | Path | None = None, dataset: str | None = None) -> dict | None:
    """Copy into ``learner`` the trained encoder its spec builds on (``options["encoder_from"]``).

    The encoder is that spec's checkpoint of the same seed, from ``out`` if it is there, else
    from :func:`results_dir`; a full run never builds on a quick one. Returns what was used
    (spec, seed, its record's fingerprint, the SHA-256 of its checkpoint and the encoder's
    ``weights``), or ``None`` for a
    spec that builds on no other. A clear error says what to train first when it is missing.
    """
    source = spec.options.get("encoder_from")
    if source is None:
        return None
    roots = _encoder_roots(out)
    for root in roots:
        found = [r for r in load_records(source, root=root, dataset=dataset, quick=quick)
                 if r["seed"] == seed and stale_reason(r) is None]
        if found:
            weights, _ = record_paths(source, seed, root=root, dataset=dataset)
            trained = load_learner(source, seed, root=root, dataset=dataset)
            state = {k: v.detach().clone() for k, v in trained.backbone.state_dict().items()}
            learner.encoder.encoder.load_state_dict(state)
            return {"spec": source, "seed": seed, "fingerprint": found[0]["fingerprint"],
                    "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(), "weights": state}
    raise FileNotFoundError(f"{spec.name} builds on the trained encoder of {source} seed {seed}, which is in none of "
                            f"{[str(r) for r in roots]}: train it first with `mlcourse train {source} --seeds {seed}`")


def stale_reason(record: dict) -> str | None:
    """Why ``record`` does not measure its spec or study as it is now defined, or ``None`` if it does.

    Another fingerprint means other settings; a full-budget record of a spec must also stand
    for the spec's budget (:meth:`~mlcourse.experiments.specs.Spec.budget_problem`).
    """
    name = record.get("spec")
    defined = SPECS.get(name) or STUDIES.get(name)
    if defined is None:
        return f"no spec or study is named {name!r}"
    if record.get("fingerprint") != defined.fingerprint():
        return (f"made with other settings (fingerprint {record.get('fingerprint')}, the "
                f"{'spec' if name in SPECS else 'study'}'s is now {defined.fingerprint()})")
    if name in SPECS and not record.get("quick"):
        return defined.budget_problem(record.get("training", {}))
    return None


def needs_training(name: str, seed: int, *, root: str | Path | None = None, dataset: str | None = None
                   ) -> str | None:
    """Why seed ``seed`` of spec or study ``name`` must be (re)trained under ``root``, or ``None`` if its record stands."""
    found = [r for r in load_records(name, root=root, dataset=dataset) if r["seed"] == seed]
    if not found:
        return "no record"
    return stale_reason(found[0])


def check_record(record: dict, *, root: str | Path | None = None) -> list[str]:
    """What is wrong with ``record`` and its weights (``[]``: nothing)."""
    name, seed = record.get("spec"), record.get("seed")
    if name in STUDIES:
        return _check_study_record(record, root)
    if name not in SPECS:
        return [f"record of an unknown spec {name!r}"]
    spec, problems = SPECS[name], []
    stale = stale_reason(record)
    if stale:
        problems.append(f"{name} seed {seed}: {stale}: retrain with `mlcourse train {name} --seeds {seed}`")
    fields = [k for k in ("steps", "stopped", "seconds", "val_step", "val_acc", "val_ci", "val_seconds")
              if k not in record.get("training", {})]
    if fields:
        problems.append(f"{name} seed {seed}: the record lacks {fields}: retrain with `mlcourse train {name}`")
    missing = [spec.test_key(s) for s in spec.tests if spec.test_key(s) not in record.get("tests", {})]
    if missing and not record.get("quick"):
        problems.append(f"{name} seed {seed}: tests missing: {missing}")
    try:
        load_learner(spec, seed, root=root, dataset=record.get("dataset"))
    except (FileNotFoundError, RuntimeError, OSError, EOFError, ValueError) as err:  # absent, corrupt or misfit
        problems.append(f"{name} seed {seed}: weights unusable: {str(err).splitlines()[0]}")
    source = spec.options.get("encoder_from")
    if source is not None and not record.get("quick"):
        problems += _check_encoder(record, spec, source, root)
    return problems


def _check_encoder(record: dict, spec: Spec, source: str, root: str | Path | None) -> list[str]:
    """A record built on another spec's encoder: that checkpoint is still there, and it is the one inside."""
    seed, dataset = record["seed"], record.get("dataset")
    used = record.get("training", {}).get("encoder_from") or {}
    retrain = f"retrain with `mlcourse train {spec.name} --seeds {seed}`"
    for folder in _encoder_roots(root):  # the same folders, in the same order, as training looks in
        weights, _ = record_paths(source, seed, root=folder, dataset=dataset)
        if weights.exists() and used.get("sha256") == hashlib.sha256(weights.read_bytes()).hexdigest():
            break
    else:
        return [f"{spec.name} seed {seed}: built on an encoder of {source} seed {seed} that is no longer the "
                f"shipped one: {retrain}"]
    try:
        inside = load_learner(spec, seed, root=root, dataset=dataset).encoder.encoder.state_dict()
    except (FileNotFoundError, RuntimeError, OSError, EOFError, ValueError):
        return []  # unusable weights are reported above
    trained = load_learner(source, seed, root=folder, dataset=dataset).backbone.state_dict()
    if any(not torch.equal(v, trained[k]) for k, v in inside.items()):
        return [f"{spec.name} seed {seed}: its frozen encoder is not {source} seed {seed}'s: {retrain}"]
    return []


def _check_study_record(record: dict, root: str | Path | None = None) -> list[str]:
    name, seed = record["spec"], record.get("seed")
    study, problems = STUDIES[name], []
    if record.get("fingerprint") != study.fingerprint():
        problems.append(f"{name} seed {seed}: made with other settings (fingerprint {record.get('fingerprint')}, "
                        f"the study's is now {study.fingerprint()}): retrain with `mlcourse train {name}`")
    fields = [k for k in ("steps", "stopped", "seconds", "arms") if k not in record.get("training", {})]
    if fields:
        problems.append(f"{name} seed {seed}: the record lacks {fields}: retrain with `mlcourse train {name}`")
    missing = [a for a in study.arms if a not in record.get("tests", {})]
    if missing:
        problems.append(f"{name} seed {seed}: arms missing: {missing}")
    for arm, t in record.get("tests", {}).items():
        hits = np.asarray(t.get("per_episode", []))
        if hits.size < 2 or not np.isin(hits, (0, 1)).all() or abs(hits.mean() - t.get("mean", -1)) > 1e-9:
            problems.append(f"{name} seed {seed}: arm {arm!r} does not hold one 0/1 result per test image "
                            "matching its mean")
    if study.kind == "transfer" and not record.get("quick"):
        from .studies import load_transfer_source

        try:
            load_transfer_source(seed, root=root, dataset=record.get("dataset"))
        except (FileNotFoundError, RuntimeError, OSError, EOFError, ValueError, KeyError) as err:
            problems.append(f"{name} seed {seed}: source network unusable: {str(err).splitlines()[0]}")
    return problems


def results_size(root: str | Path | None = None) -> int:
    """Bytes of everything under the results folder."""
    root = Path(root if root is not None else results_dir())
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def shipped_or(spec: str | Spec, seed: int, fallback: torch.nn.Module, *, device: torch.device | str = "cpu"
               ) -> tuple[torch.nn.Module, str]:
    """The shipped learner of ``spec`` and ``seed`` if its record exists, else ``fallback``; with a word on which.

    A lecture reads converged weights where they were shipped for the data set it runs on,
    and its own short live run where they were not (e.g. on Omniglot before ``mlcourse train``).
    """
    name = spec.name if isinstance(spec, Spec) else spec
    if any(r["seed"] == seed for r in load_records(name)):
        return load_learner(name, seed, device=device), f"{name} seed {seed} (converged, shipped)"
    return fallback.to(device).eval(), f"the short live run ({name} has no shipped record for this data set)"
