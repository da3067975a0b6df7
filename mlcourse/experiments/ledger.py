"""The claims ledger: every claim the course tests, its measurement from the shipped records, a verdict.

A verdict is one of:

- ``holds`` / ``does not hold``: at least 3 training seeds, every run stopped by the stopping
  rule (not by its budget), and the difference is on the same side of zero (of the margin,
  for a claim of no difference) in every seed's paired interval *and* in the interval over
  seeds (a t interval of the per-seed differences);
- ``not settled at this budget``: anything less: fewer seeds, a run that hit its budget,
  or intervals that do not decide;
- ``not measured yet``: no full-budget record of a spec the claim needs (``mlcourse train``).

The measured difference is reported either way, with both intervals: over the test episodes
(per seed) and over training seeds.
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from ..evaluation import paired_difference
from .records import load_learner, load_records, stale_reason, test_result
from .specs import SPECS

__all__ = ["Claim", "Verdict", "CLAIMS", "PAPERS", "verdicts", "ledger_html", "papers_html", "compare", "compare_specs",
           "claim_verdict",
           "SeedSummary", "seed_summary", "results_table", "claims_of", "current_records", "FAMILIES",
           "family_rows", "families_html", "FAMILY_TESTS", "TRANSDUCTIVE_KINDS", "FAMILY_REFERENCE"]

HOLDS, FAILS, OPEN, MISSING = "holds", "does not hold", "not settled at this budget", "not measured yet"


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict with what was measured.

    Attributes:
        verdict: ``holds``, ``does not hold``, ``not settled at this budget`` or ``not measured yet``.
        difference: Mean over seeds of the measured difference (accuracy, in [−1, 1]), or ``nan``.
        seed_half_width: Half-width of the 95% t interval over seeds (``nan`` with one seed).
        per_seed: ``(difference, half-width over test episodes)`` of each seed.
        converged: Whether every run involved stopped by its stopping rule.
        why: One sentence on how the verdict was reached.
    """

    verdict: str
    difference: float
    seed_half_width: float
    per_seed: tuple[tuple[float, float], ...]
    converged: bool
    why: str

    def measured(self) -> str:
        """The measurement in words (points of accuracy)."""
        if not self.per_seed:
            return self.why
        seeds = ", ".join(f"{100 * d:+.1f} ± {100 * h:.1f}" for d, h in self.per_seed)
        over = f" ± {100 * self.seed_half_width:.1f} over seeds" if np.isfinite(self.seed_half_width) else ""
        return f"{100 * self.difference:+.1f}{over} (per seed: {seeds})"


@dataclass(frozen=True)
class Claim:
    """A claim of the course's sources and how the records test it.

    Attributes:
        text: The claim, in words.
        source: Who makes it.
        chapter: The lecture that teaches it.
        a, b: Specs compared (``b`` is ``a`` for a comparison between two tests of one spec).
        tests: Test names; ``test_b`` (default the same) is ``b``'s test.
        kind: ``"greater"`` (a > b), ``"equal"`` (``|a - b|`` within ``margin``) or
            ``"not_worse"`` (a at most ``margin`` below b).
        margin: Accuracy margin of an ``"equal"`` claim.
        test_b: The test of ``b`` when it differs from ``a``'s (e.g. 20-way against 5-way).
    """

    text: str
    source: str
    chapter: int
    a: str | None
    b: str | None
    tests: tuple[str, ...] = ("5-way 1-shot",)
    kind: str = "greater"
    margin: float = 0.02
    test_b: tuple[str, ...] | None = None
    note: str = ""


def current_records(name: str, *, root: str | Path | None = None, dataset: str | None = None) -> list[dict]:
    """The full-budget records of spec or study ``name`` that measure it as it is now defined.

    A record made with other settings (another fingerprint), or one that ran out of a smaller
    budget than the spec's, measures another experiment: the ledger never counts it
    (:func:`~mlcourse.experiments.records.stale_reason`).
    """
    return [r for r in load_records(name, root=root, dataset=dataset) if stale_reason(r) is None]


def compare(claim: Claim, *, root: str | Path | None = None, dataset: str | None = None) -> Verdict:
    """The verdict of ``claim`` from the records under ``root``."""
    if claim.a is None:
        return Verdict(MISSING, float("nan"), float("nan"), (), False, claim.note or "no spec measures it yet")
    ra, rb = (current_records(s, root=root, dataset=dataset) for s in (claim.a, claim.b))
    if not ra or not rb:
        missing = claim.a if not ra else claim.b
        return Verdict(MISSING, float("nan"), float("nan"), (), False,
                       f"no record of {missing} made with its current settings yet: `mlcourse train {missing}`")
    by_seed_b = {r["seed"]: r for r in rb}
    pairs = [(r, by_seed_b[r["seed"]]) for r in ra if r["seed"] in by_seed_b]
    tests_b = claim.test_b or claim.tests
    per_test: list[list[tuple[float, float]]] = []
    for ta, tb in zip(claim.tests, tests_b):
        rows = []
        for x, y in pairs:
            a, b = test_result(x, ta), test_result(y, tb)
            if (a.seed, a.shape) != (b.seed, b.shape):  # two tests of one model: other episodes, independent
                rows.append((a.mean - b.mean, float(np.hypot(a.half_width, b.half_width))))
            else:
                d = paired_difference(a, b)
                rows.append((d.mean, d.half_width))
        per_test.append(rows)
    converged = all(r["training"]["stopped"] == "converged" for pair in pairs for r in pair)
    n = len(pairs)
    verdicts_per_test, summaries = [], []
    for rows in per_test:
        diffs = np.array([d for d, _ in rows])
        mean = float(diffs.mean())
        seed_hw = float(stats.t.ppf(0.975, n - 1) * diffs.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        summaries.append((mean, seed_hw, tuple(rows)))
        if claim.kind == "greater":
            lo_ok = all(d - h > 0 for d, h in rows) and n > 1 and mean - seed_hw > 0
            hi_ok = all(d + h < 0 for d, h in rows) and n > 1 and mean + seed_hw < 0
        elif claim.kind == "not_worse":  # a is at most `margin` below b (non-inferiority)
            m = claim.margin
            lo_ok = all(d - h > -m for d, h in rows) and n > 1 and mean - seed_hw > -m
            hi_ok = all(d + h < -m for d, h in rows) and n > 1 and mean + seed_hw < -m
        else:
            m = claim.margin
            lo_ok = all(abs(d) + h < m for d, h in rows) and n > 1 and abs(mean) + seed_hw < m
            hi_ok = all(abs(d) - h > m for d, h in rows) and n > 1 and abs(mean) - seed_hw > m
        verdicts_per_test.append(HOLDS if lo_ok else FAILS if hi_ok else OPEN)
    mean, seed_hw, rows = summaries[0]
    if n < 3:
        return Verdict(OPEN, mean, seed_hw, rows, converged, f"{n} seed(s) measured: 3 are needed")
    if not converged:
        budget = [f"{r['spec']} seed {r['seed']}" for pair in pairs for r in pair
                  if r["training"]["stopped"] != "converged"]
        return Verdict(OPEN, mean, seed_hw, rows, converged,
                       f"still improving when the budget ran out: {', '.join(budget)}")
    if len(set(verdicts_per_test)) == 1 and verdicts_per_test[0] != OPEN:
        how = "every seed and the seed interval agree" + (f" at {', '.join(claim.tests)}" if len(claim.tests) > 1
                                                          else "")
        return Verdict(verdicts_per_test[0], mean, seed_hw, rows, converged, how)
    return Verdict(OPEN, mean, seed_hw, rows, converged, "the intervals do not decide: "
                   + "; ".join(f"{t}: {v}" for t, v in zip(claim.tests, verdicts_per_test)))


#: Every claim the course tests, with the lecture that makes it.
CLAIMS: tuple[Claim, ...] = (
    Claim("More ways lower accuracy (5-way vs 20-way, 1-shot)", "all few-shot benchmarks", 2,
          "protonet-1shot", "protonet-1shot", ("5-way 1-shot",), test_b=("20-way 1-shot",)),
    Claim("More shots raise accuracy (5-shot vs 1-shot, 5-way)", "all few-shot benchmarks", 2,
          "protonet-1shot", "protonet-1shot", ("5-way 5-shot",), test_b=("5-way 1-shot",)),
    Claim("More training classes help (all background classes vs 30)", "Snell et al. 2017; the course's sources", 2,
          "protonet-1shot", "protonet-30classes"),
    Claim("ProtoNet beats the Siamese network at 5-way 1-shot", "Snell et al. 2017", 2,
          "protonet-1shot", "siamese-1shot"),
    Claim("Training at the test shot helps ProtoNet at 5 shots", "Snell et al. 2017 (trained at the test shot)", 2,
          "protonet-5shot", "protonet-1shot", ("5-way 5-shot",)),
    Claim("Matching networks: scaling the cosine (x10) before the attention's softmax beats the paper's unscaled "
          "cosine", "the course (Conv4's ReLU features have cosines in [0, 1]: an unscaled attention stays flat)", 2,
          "matching-scaled-1shot", "matching-1shot"),
    Claim("ProtoNet beats Matching networks at 20-way 1-shot", "Snell et al. 2017, Table 1", 2,
          "protonet-1shot", "matching-scaled-1shot", ("20-way 1-shot",)),
    Claim("Baseline++'s cosine head beats Baseline's linear head at 5-way 1-shot", "Chen et al. 2019", 2,
          "baselinepp", "baseline"),
    Claim("Meta-training beats pretraining a classifier on the same images: ProtoNet against Baseline at 5-way "
          "1-shot", "Chen et al. 2019 (with Conv-4, meta-learners beat Baseline; the gap shrinks with deeper "
          "backbones)", 2, "protonet-1shot", "baseline"),
    Claim("SimpleShot (pretrained, centred and normalised nearest mean) is not worse than ProtoNet at 5-way 1-shot "
          "(by more than 2 points)", "Wang et al. 2019 (SimpleShot at or above meta-learners)", 2, "simpleshot",
          "protonet-1shot", kind="not_worse"),
    Claim("ANIL costs no accuracy: adapting the head alone matches MAML (1 inner step; margin 2 points)",
          "Raghu et al. 2020 (feature reuse)", 3, "anil-1step", "maml-1step", ("5-way 1-shot", "5-way 5-shot"),
          kind="equal"),
    Claim("Proto-MAML beats MAML at 5-way 1-shot (1 inner step)",
          "Triantafillou et al. 2020 (first-order Proto-MAML against first-order MAML, on Meta-Dataset)", 3,
          "protomaml-1step", "maml-1step"),
    Claim("First-order MAML costs no accuracy (1 inner step; margin 2 points)", "Finn et al. 2017", 3,
          "fomaml-1step", "maml-1step", ("5-way 1-shot", "5-way 5-shot"), kind="equal"),
    Claim("First-order MAML costs no accuracy (5 inner steps; margin 2 points)", "Finn et al. 2017", 3,
          "fomaml-5step", "maml-5step", ("5-way 1-shot", "5-way 5-shot"), kind="equal"),
    Claim("Feedforward + average beats an LSTM when order does not matter", "the course's sources (CS330)", 4,
          "averaging", "lstm", ("5-way 1-shot", "5-way 5-shot")),
    Claim("Feedforward + average beats an LSTM on one shared, frozen encoder (ProtoNet's)",
          "the course's sources (CS330)", 4, "averaging-pretrained", "lstm-pretrained", ("5-way 1-shot", "5-way 5-shot")),
    Claim("Attention over the support set (a transformer in context) beats an LSTM reading it in order",
          "Mishra et al. 2018 (SNAIL); the course's sources (CS330)", 4, "attention", "lstm",
          ("5-way 1-shot", "5-way 5-shot")),
    Claim("A pre-trained encoder lifts the averaging learner above learning its own",
          "Garnelo et al. 2018; the course's sources", 4, "averaging-pretrained", "averaging",
          ("5-way 1-shot", "5-way 5-shot")),
    Claim("A distilled student beats one trained from scratch", "Hinton et al. 2015", 7,
          "distillation", "distillation", ("distilled",), test_b=("scratch",)),
    Claim("Four cases, small and similar: a linear classifier on the frozen top layer beats fine-tuning all",
          "CS231n transfer-learning notes", 6, "transfer-cases", "transfer-cases",
          ("similar, small: linear_svm",), test_b=("similar, small: fine_tune_all",)),
    Claim("Four cases, large and similar: fine-tuning all beats a linear classifier on the top layer",
          "CS231n transfer-learning notes", 6, "transfer-cases", "transfer-cases",
          ("similar, large: fine_tune_all",), test_b=("similar, large: linear_svm",)),
    Claim("Four cases, small and different: a linear classifier on an earlier layer beats one on the top layer",
          "CS231n transfer-learning notes", 6, "transfer-cases", "transfer-cases",
          ("different, small: block_probe",), test_b=("different, small: linear_svm",)),
    Claim("Four cases, large and different: fine-tuning from the source beats training from scratch",
          "CS231n transfer-learning notes", 6, "transfer-cases", "transfer-cases",
          ("different, large: fine_tune_all",), test_b=("different, large: from_scratch",)),
    Claim("Inductive transfer: a network pre-trained on another task of the same images (which script) "
          "fine-tunes to a small target (which character) better than one trained from scratch",
          "Pan and Yang 2010; the course's sources (face age to person identity)", 6, "multitask", "multitask",
          ("small: fine_tune_all",), test_b=("small: from_scratch",)),
    Claim("Labels of the target's own kind transfer better: a source trained on which character beats one trained "
          "on which script (small target, fine-tuning all)", "Yosinski et al. 2014 (transfer falls as tasks part)",
          6, "transfer-cases", "multitask", ("similar, small: fine_tune_all",), test_b=("small: fine_tune_all",)),
    Claim("Multi-task learning: a trunk shared with a big task (which script) beats learning a small task alone",
          "Caruana 1997", 6, "multitask", "multitask", ("small: multitask",), test_b=("small: from_scratch",)),
    Claim("Multi-task learning costs the big task nothing (which script; margin 2 points)", "Caruana 1997", 6,
          "multitask", "multitask", ("script: multitask, small",), kind="equal", test_b=("script: source only",)),
    Claim("Gradual unfreezing beats unfreezing everything at once (small target)", "Howard and Ruder 2018", 6,
          "multitask", "multitask", ("small: gradual",), test_b=("small: fine_tune_all",)),
    Claim("Domain adaptation helps: DANN beats source-only on the unlabelled target", "Ganin et al. 2016", 8,
          "domain-digits", "domain-digits", ("dann",), test_b=("source_only",)),
    Claim("Domain adaptation helps: Deep CORAL beats source-only", "Sun and Saenko 2016", 8,
          "domain-digits", "domain-digits", ("coral",), test_b=("source_only",)),
    Claim("Domain adaptation helps: MMD alignment beats source-only", "Long et al. 2015", 8,
          "domain-digits", "domain-digits", ("mmd",), test_b=("source_only",)),
)

# Headline numbers of the papers, on Omniglot (Lake et al.'s split with rotations), for comparison.
PAPERS: tuple[tuple[str, str, str, dict[str, float]], ...] = (
    ("ProtoNet", "Snell et al. 2017, Table 1", "protonet-1shot", {"5-way 1-shot": 98.8, "20-way 1-shot": 96.0}),
    ("ProtoNet", "Snell et al. 2017, Table 1", "protonet-5shot", {"5-way 5-shot": 99.7, "20-way 5-shot": 98.9}),
    ("Matching networks", "Vinyals et al. 2016, Table 1", "matching-1shot",
     {"5-way 1-shot": 98.1, "5-way 5-shot": 98.9, "20-way 1-shot": 93.8, "20-way 5-shot": 98.5}),
    ("Matching networks", "Vinyals et al. 2016, Table 1", "matching-scaled-1shot",
     {"5-way 1-shot": 98.1, "5-way 5-shot": 98.9, "20-way 1-shot": 93.8, "20-way 5-shot": 98.5}),
    ("Relation Network", "Sung et al. 2018, Table 1", "relation-1shot", {"5-way 1-shot": 99.6}),
    ("Relation Network", "Sung et al. 2018, Table 1", "relation-5shot", {"5-way 5-shot": 99.8}),
    ("MAML (second order)", "Finn et al. 2017, Table 1", "maml-1step",
     {"5-way 1-shot": 98.7, "5-way 5-shot": 99.9}),
    ("first-order MAML", "Finn et al. 2017, Table 1", "fomaml-1step", {"5-way 1-shot": 98.3, "5-way 5-shot": 99.2}),
    ("Meta-SGD", "Li et al. 2017, Table 1", "metasgd-1step", {"5-way 1-shot": 99.53, "5-way 5-shot": 99.93}),
    ("Reptile", "Nichol et al. 2018, Table 1 (non-transductive)", "reptile-1shot",
     {"5-way 1-shot": 95.39, "5-way 5-shot": 98.90}),
    ("MANN", "Santoro et al. 2016, as reported by Garnelo et al. 2018", "lstm",
     {"5-way 1-shot": 82.8, "5-way 5-shot": 94.9}),
    ("CNP (feedforward + average)", "Garnelo et al. 2018, Table 2", "averaging",
     {"5-way 1-shot": 95.3, "5-way 5-shot": 98.5}),
)


def verdicts(*, root: str | Path | None = None, dataset: str | None = None) -> list[tuple[Claim, Verdict]]:
    """Every claim of ``CLAIMS`` with its verdict from the records."""
    return [(c, compare(c, root=root, dataset=dataset)) for c in CLAIMS]


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def ledger_html(*, root: str | Path | None = None, dataset: str | None = None) -> str:
    """The ledger as an HTML table: claim, source, lecture, measurement, verdict and why."""
    rows = [[c.text, c.source, str(c.chapter), v.measured() if v.per_seed else "—", v.verdict, v.why]
            for c, v in verdicts(root=root, dataset=dataset)]
    return _table(["claim", "source", "lecture", "measured difference (points, 95%)", "verdict", "why"], rows)


def papers_html(*, root: str | Path | None = None, dataset: str | None = None) -> str:
    """Each paper's headline numbers (Omniglot) beside ours (mean over seeds, with the range over seeds).

    The papers train at the shot they test; where our spec was trained at another shot, the
    "our spec" column says so.
    """
    rows = []
    for method, source, spec, numbers in PAPERS:
        records = current_records(spec, root=root, dataset=dataset)
        shots = SPECS[spec].k_shot
        trained = (f"{min(shots)} to {max(shots)} shots" if isinstance(shots, tuple) else
                   f"{shots} shot{'s' if shots > 1 else ''}")
        for test, paper in numbers.items():
            means = [100 * r["tests"][test]["mean"] for r in records if test in r["tests"]]
            seeds = f"{len(means)} seed{'s' if len(means) > 1 else ''}"
            ours = f"{np.mean(means):.1f} ({min(means):.1f}–{max(means):.1f}, {seeds})" if means else "not measured yet"
            rows.append([method, test, f"{paper:.1f}", ours, f"{SPECS[spec].title} (trained at {trained})", source])
    return _table(["method", "test", "paper (Omniglot)", "ours", "our spec", "paper's source"], rows)


def claim_verdict(a: str, b: str, *, root: str | Path | None = None, dataset: str | None = None) -> Verdict:
    """The verdict of the ledger's claim comparing spec ``a`` with spec ``b`` (the first such claim of :data:`CLAIMS`),
    with the claim's own tests, kind and margin: what a lecture glues is what the ledger page says."""
    for claim in CLAIMS:
        if (claim.a, claim.b) == (a, b):
            return compare(claim, root=root, dataset=dataset)
    raise KeyError(f"no claim of the ledger compares {a} with {b}")


def compare_specs(a: str, b: str, test: str = "5-way 1-shot", *, kind: str = "greater", margin: float = 0.02,
                  test_b: str | None = None, root: str | Path | None = None, dataset: str | None = None) -> Verdict:
    """The verdict on "``a`` beats ``b``" (``kind="greater"``) or "they are equal" (``"equal"``) at ``test``."""
    claim = Claim(f"{a} vs {b}", "", SPECS[a].chapter, a, b, (test,), kind=kind, margin=margin,
                  test_b=(test_b,) if test_b else None)
    return compare(claim, root=root, dataset=dataset)


@dataclass(frozen=True)
class SeedSummary:
    """One spec's test over its training seeds: mean, 95% t half-width over seeds, per-seed means."""

    mean: float
    half_width: float
    per_seed: tuple[float, ...]

    def __str__(self) -> str:
        spread = f" ± {100 * self.half_width:.1f}" if np.isfinite(self.half_width) else ""
        n = len(self.per_seed)
        return f"{100 * self.mean:.1f}{spread}% ({n} seed{'s' if n > 1 else ''})"


def seed_summary(spec: str, test: str, *, root: str | Path | None = None, dataset: str | None = None
                 ) -> SeedSummary | None:
    """Mean over the seeds of ``spec``'s ``test`` with its 95% t interval; ``None`` when not measured."""
    means = [r["tests"][test]["mean"] for r in current_records(spec, root=root, dataset=dataset) if test in r["tests"]]
    if not means:
        return None
    n = len(means)
    half = float(stats.t.ppf(0.975, n - 1) * np.std(means, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return SeedSummary(float(np.mean(means)), half, tuple(means))


def results_table(rows: dict[str, str], tests: list[str], *, root: str | Path | None = None,
                  dataset: str | None = None) -> str:
    """A text table: one row per ``{label: spec}``, one column per test, mean over seeds ± t interval."""
    width = max(len(label) for label in rows) + 2
    lines = [" " * width + "".join(f"{t:>24}" for t in tests)]
    for label, spec in rows.items():
        cells = [seed_summary(spec, t, root=root, dataset=dataset) for t in tests]
        lines.append(f"{label:<{width}}" + "".join(f"{str(c) if c else '—':>24}" for c in cells))
    return "\n".join(lines)


def claims_of(chapter: int, *, root: str | Path | None = None, dataset: str | None = None) -> str:
    """The ledger's claims of one lecture with their verdicts, as text (a lecture prints it)."""
    lines = [f"The ledger's claims of lecture {chapter} (from the shipped records):"]
    for claim, verdict in verdicts(root=root, dataset=dataset):
        if claim.chapter == chapter:
            lines.append(f"  [{verdict.verdict}] {claim.text}: {verdict.measured() if verdict.per_seed else ''}"
                         f"{'; ' if verdict.per_seed else ''}{verdict.why}")
    return "\n".join(lines)


#: Every learner spec by family (the map of the field's four, with transfer beside them). A spec that is
#: an ablation of another (fewer training classes) is left out, since it is not another method.
FAMILIES: dict[str, tuple[str, ...]] = {
    "metric": ("protonet-1shot", "protonet-5shot", "protonet32-1shot", "protonet32-5shot", "siamese-1shot",
               "matching-1shot", "matching-scaled-1shot", "relation-1shot", "relation-5shot"),
    "transfer (no meta-learning)": ("baseline", "baselinepp", "simpleshot"),
    "optimization": ("maml-1step", "fomaml-1step", "maml-5step", "fomaml-5step", "anil-1step", "protomaml-1step",
                     "metasgd-1step", "reptile-1shot"),
    "model-based (black box)": ("averaging", "lstm", "attention", "averaging-pretrained", "lstm-pretrained"),
}
#: The test shapes of the comparison of every family.
FAMILY_TESTS = ("5-way 1-shot", "5-way 5-shot", "20-way 1-shot", "20-way 5-shot")
#: Learner kinds whose test-time answers depend on the other queries of the episode, because BatchNorm
#: normalises the batch of queries together as the MAML reference code does (``tests/test_transductive.py``
#: checks every spec either way).
TRANSDUCTIVE_KINDS = ("maml", "metasgd", "reptile", "anil", "protomaml")
#: The spec each learner's paired difference is taken against, by backbone width and test, which is ProtoNet
#: trained at the test's shot on a Conv4 of the learner's width (64 filters, or 32 as the MAML family and the
#: black boxes use).
FAMILY_REFERENCE = {64: {"5-way 1-shot": "protonet-1shot", "5-way 5-shot": "protonet-5shot",
                         "20-way 1-shot": "protonet-1shot", "20-way 5-shot": "protonet-5shot"},
                    32: {"5-way 1-shot": "protonet32-1shot", "5-way 5-shot": "protonet32-5shot",
                         "20-way 1-shot": "protonet32-1shot", "20-way 5-shot": "protonet32-5shot"}}


def _against_records(result, reference: str, test: str, *, root, dataset) -> Verdict | None:
    """The paired difference of one fixed result (a baseline with no training seeds) against every seed of
    ``reference``, as a :class:`Verdict` whose interval over seeds is the reference's spread."""
    records = [r for r in current_records(reference, root=root, dataset=dataset) if test in r["tests"]]
    rows = []
    for r in records:
        d = paired_difference(result, test_result(r, test))
        rows.append((d.mean, d.half_width))
    if not rows:
        return None
    diffs = np.array([d for d, _ in rows])
    n = len(rows)
    hw = float(stats.t.ppf(0.975, n - 1) * diffs.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return Verdict(OPEN, float(diffs.mean()), hw, tuple(rows), False, f"against {reference}, episode by episode")


def _mib(nbytes: int | None) -> float | None:
    return None if nbytes is None else nbytes / 2**20


def _pixel_row(*, root, dataset) -> dict | None:
    """The baseline that learns nothing (1-nearest neighbour in pixels) on the records' very test episodes."""
    from ..data.course import course_data, dataset_name
    from ..evaluation import evaluate
    from ..metric import pixel_nearest_neighbour
    from .specs import STANDARD_TESTS, TEST_SEED

    if dataset is not None and dataset != dataset_name():
        return None  # its test episodes come from the data set the environment selects
    if dataset_name() == "fontglot":
        from ..data.glyphs import COURSE_FONTS_DIGEST, fonts_digest, usable_fonts

        if fonts_digest(usable_fonts()) != COURSE_FONTS_DIGEST:
            return None  # other fonts draw other images than the records were tested on: nothing to pair
    evaluation = course_data("evaluation", preset="full")
    tests, against = {}, {}
    for shape in STANDARD_TESTS:
        n, k, q = shape
        if n > evaluation.n_classes:
            continue
        test = f"{n}-way {k}-shot"
        result = evaluate(pixel_nearest_neighbour, evaluation, n_way=n, k_shot=k, n_query=q,
                          n_episodes=SPECS[FAMILY_REFERENCE[64][test]].test_episodes, seed=TEST_SEED, device="cpu")
        tests[test] = SeedSummary(result.mean, float("nan"), (result.mean,))
        against[test] = _against_records(result, FAMILY_REFERENCE[64][test], test, root=root, dataset=dataset)
    return {"family": "none (pixels)", "spec": "pixel", "title": "1-nearest neighbour in pixels", "parameters": 0,
            "filters": None, "memory_mib": 0.0, "inference": "inductive", "trained_shots": "—", "seeds": 0,
            "minutes": 0.0, "tests": tests, "against_protonet": against}


def family_rows(*, root: str | Path | None = None, dataset: str | None = None, memory: bool = True,
                pixel: bool = True) -> list[dict]:
    """One row per learner spec of :data:`FAMILIES`: accuracy per test over seeds, the paired difference
    against ProtoNet of the same backbone width trained at the test's shot (mean over seeds ± t interval),
    seeds, minutes per seed, memory per training step.

    Each row is a dict with ``family``, ``spec``, ``title``, ``trained_shots``, ``seeds``, ``parameters``
    (of the trained learner, frozen encoders included; ``None`` before any record), ``filters`` (the
    backbone's width, see :func:`~mlcourse.experiments.footprint.backbone_filters`), ``memory_mib``
    (:func:`~mlcourse.experiments.footprint.training_memory` of one outer step, MiB; ``None`` without
    ``memory``), ``inference`` (``"transductive"`` where the answers depend on the other queries, see
    :data:`TRANSDUCTIVE_KINDS`), ``minutes`` (mean training minutes per seed, validations included), and
    per test in :data:`FAMILY_TESTS` a :class:`SeedSummary` (or ``None``) under ``tests`` and a
    :class:`Verdict` (or ``None``) under ``against_protonet``. With ``pixel``, the first row is the
    1-nearest neighbour in pixels on the same test episodes (no training, no seeds).
    """
    from ..data.course import course_data
    from .footprint import backbone_filters, training_memory
    from .specs import build_learner

    rows = [r for r in [_pixel_row(root=root, dataset=dataset)] if r is not None] if pixel else []
    background = course_data("background") if memory else None
    for family, specs in FAMILIES.items():
        for name in specs:
            spec = SPECS[name]
            records = current_records(name, root=root, dataset=dataset)
            shots = spec.k_shot
            parameters = None
            if records:  # the size of the trained learner (meta-learned rates and pretraining heads included)
                learner = load_learner(name, records[0]["seed"], root=root, dataset=dataset)
                parameters = sum(p.numel() for p in learner.parameters())
            else:
                learner = build_learner(spec, n_classes=1)
            filters = backbone_filters(learner)
            references = FAMILY_REFERENCE[32 if filters == 32 else 64]
            tests, against = {}, {}
            for test in FAMILY_TESTS:
                tests[test] = seed_summary(name, test, root=root, dataset=dataset)
                ref = references[test]
                against[test] = (compare_specs(name, ref, test, root=root, dataset=dataset)
                                 if tests[test] is not None and name != ref else None)
            rows.append({"family": family, "spec": name, "title": spec.title, "parameters": parameters,
                         "filters": filters,
                         "memory_mib": _mib(training_memory(spec, background)) if memory else None,
                         "inference": "transductive" if spec.learner in TRANSDUCTIVE_KINDS else "inductive",
                         "trained_shots": f"{min(shots)}-{max(shots)}" if isinstance(shots, tuple) else str(shots),
                         "seeds": len(records),
                         "minutes": float(np.mean([r["training"]["seconds"] for r in records])) / 60 if records
                         else float("nan"),
                         "tests": tests, "against_protonet": against})
    return rows


def families_html(*, root: str | Path | None = None, dataset: str | None = None, memory: bool = True,
                  pixel: bool = True) -> str:
    """:func:`family_rows` as an HTML table: accuracy (mean ± t interval over seeds) and, below it, the paired
    difference against ProtoNet of the same width trained at that shot (points, mean ± t interval over seeds);
    ``memory`` and ``pixel`` as in :func:`family_rows`."""
    out = []
    for row in family_rows(root=root, dataset=dataset, memory=memory, pixel=pixel):
        cells = [row["family"], row["title"], row["trained_shots"], str(row["seeds"]) if row["seeds"] else "—",
                 f"{row['parameters']:,}" if row["parameters"] is not None else "—",
                 str(row["filters"]) if row["filters"] is not None else "—", row["inference"]]
        for test in FAMILY_TESTS:
            s, v = row["tests"].get(test), row["against_protonet"].get(test)
            if s is None:
                cells.append("—")
                continue
            acc = f"{100 * s.mean:.1f}" + (f" ± {100 * s.half_width:.1f}" if np.isfinite(s.half_width) else "")
            if v is not None and v.per_seed:
                hw = f" ± {100 * v.seed_half_width:.1f}" if np.isfinite(v.seed_half_width) else ""
                acc += f" ({100 * v.difference:+.1f}{hw})"
            cells.append(acc)
        cells.append(f"{row['minutes']:.1f}" if np.isfinite(row["minutes"]) else "—")
        cells.append(f"{row['memory_mib']:.1f}" if row["memory_mib"] is not None else "—")
        papers = [f"{test}: {number:.1f} ({source})" for _, source, spec, numbers in PAPERS if spec == row["spec"]
                  for test, number in numbers.items()]
        cells.append("; ".join(papers) if papers else "—")
        out.append(cells)
    header = ["family", "learner", "trained at shots", "seeds", "parameters", "backbone filters", "test-time queries",
              *FAMILY_TESTS, "training minutes per seed", "autograd memory per outer step (MiB)",
              "the paper's own numbers (Omniglot)"]
    return _table(header, out)
