"""Experiments as code: the specs of every result the book reports, their runs, records and ledger.

- :mod:`~mlcourse.experiments.specs`: one :class:`~mlcourse.experiments.specs.Spec` per result (``SPECS``);
- :mod:`~mlcourse.experiments.runner`: :func:`~mlcourse.experiments.runner.train_spec` trains a spec's seed to its
  stopping rule and writes a checkpoint and a record (``mlcourse train``);
- :mod:`~mlcourse.experiments.records`: the shipped records and weights, read and checked;
- :mod:`~mlcourse.experiments.ledger`: the claims the course tests, with verdicts from the records;
- :mod:`~mlcourse.experiments.footprint`: what one outer step of a spec holds in memory, its backbone width.
"""
from .records import check_record, load_learner, load_records, results_dir, test_result
from .specs import SPECS, TEST_SEED, Spec, build_learner, select_specs

__all__ = ["SPECS", "TEST_SEED", "Spec", "build_learner", "select_specs", "check_record", "load_learner",
           "load_records", "results_dir", "test_result", "train_spec"]


def __getattr__(name: str):
    if name == "train_spec":
        from .runner import train_spec
        return train_spec
    raise AttributeError(f"module 'mlcourse.experiments' has no attribute {name!r}")
