"""Experiments as code: every spec trains, shipped records match their specs and weights, the ledger's verdicts."""
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch

from mlcourse.cli import main
from mlcourse.data import FontGlot
from mlcourse.data.glyphs import COURSE_FONTS_DIGEST, fonts_digest, usable_fonts
from mlcourse.evaluation import evaluate
from mlcourse.experiments import SPECS, TEST_SEED, build_learner, check_record, load_learner, load_records, select_specs, train_spec
from mlcourse.experiments.ledger import (PAPERS, papers_html, CLAIMS, FAILS, HOLDS, MISSING, OPEN, Claim, compare, current_records, ledger_html,
                                         verdicts)
from mlcourse.experiments.records import record_paths, results_dir, results_size
from mlcourse.experiments.studies import STUDIES, run_study
from mlcourse.metric import PrototypicalNetwork
from mlcourse.backbones import Conv4, FrozenEncoder
from mlcourse.training import meta_train

SHIPPED = [r for name in SPECS for r in load_records(name, dataset="fontglot")]


@pytest.fixture
def tiny_course(tiny_root, monkeypatch):
    """The course's data is the tiny FontGlot build (as in quick mode)."""
    monkeypatch.setenv("MLCOURSE_DATA", str(tiny_root))
    monkeypatch.setenv("MLCOURSE_QUICK", "1")
    monkeypatch.delenv("MLCOURSE_DATASET", raising=False)
    return tiny_root


@pytest.mark.parametrize("name", list(SPECS))
def test_every_spec_trains_at_the_quick_budget(name, tiny_course, tmp_path):
    spec = SPECS[name]
    record = train_spec(spec, 0, quick=True, out=tmp_path, device="cpu", progress=False)
    assert record["quick"] and record["fingerprint"] == spec.fingerprint() and record["training"]["steps"] > 0
    assert record["training"]["stopped"] in ("converged", "budget")
    assert set(record["tests"]) <= {spec.test_key(s) for s in spec.tests} and record["tests"]
    for test in record["tests"].values():
        assert len(test["per_episode"]) == 20 and test["seed"] == TEST_SEED
    weights, record_file = record_paths(name, 0, root=tmp_path, dataset="fontglot")
    assert json.loads(record_file.read_text())["spec"] == name
    assert check_record(record, root=tmp_path) == []
    assert load_records(name, root=tmp_path, dataset="fontglot") == []  # quick records never count as results
    assert len(load_records(name, root=tmp_path, dataset="fontglot", quick=True)) == 1


@pytest.mark.parametrize("record", SHIPPED, ids=[f"{r['spec']}-seed{r['seed']}" for r in SHIPPED])
def test_shipped_record_matches_its_spec_and_weights(record, monkeypatch):
    """The weights reproduce the record's first test episodes: the checkpoint is the one that was tested."""
    monkeypatch.delenv("MLCOURSE_QUICK", raising=False)
    assert not record["quick"] and record["dataset"] == "fontglot"
    assert check_record(record) == []
    spec = SPECS[record["spec"]]
    assert record["training"]["stopped"] in ("converged", "budget")
    test = record["tests"][spec.test_key(spec.tests[0])]
    n, k, q = test["shape"]
    assert fonts_digest(usable_fonts()) == COURSE_FONTS_DIGEST, "not the fonts FontGlot was built from"
    learner = load_learner(spec, record["seed"], dataset="fontglot")
    again = evaluate(learner, FontGlot("evaluation", preset="full", progress=False), n_way=n, k_shot=k, n_query=q,
                     n_episodes=8, seed=TEST_SEED, device="cpu", **spec.test_options)
    expected = np.array(test["per_episode"][:8])
    if spec.learner == "pretrained" and spec.options.get("rule") in ("linear", "cosine"):
        # each episode's head is fitted by L-BFGS, whose line search and stopping test follow float rounding, which
        # differs between CPUs: a query near a tie may change its answer. One query of one episode, at most.
        moved = np.abs(again.per_episode - expected) > 1e-4
        assert moved.sum() <= 1 and np.all(np.abs(again.per_episode - expected) <= 1 / (n * q) + 1e-4), \
            (again.per_episode, expected)
    else:
        np.testing.assert_allclose(again.per_episode, expected, atol=1e-4)


def test_shipped_results_stay_compact():
    assert results_size(results_dir()) < 64 * 2**20  # the bound the README states


def test_a_corrupt_or_stale_record_is_reported(tmp_path, tiny_course):
    record = train_spec(SPECS["protonet-1shot"], 0, quick=True, out=tmp_path, device="cpu", progress=False)
    weights, _ = record_paths("protonet-1shot", 0, root=tmp_path, dataset="fontglot")
    stale = {**record, "fingerprint": "0" * 16}
    assert any("other settings" in p for p in check_record(stale, root=tmp_path))
    weights.write_bytes(weights.read_bytes()[:1000])  # a truncated checkpoint
    assert any("weights unusable" in p for p in check_record(record, root=tmp_path))
    weights.unlink()
    assert any("mlcourse train protonet-1shot" in p for p in check_record(record, root=tmp_path))


def test_select_specs_by_name_chapter_or_all():
    assert [s.name for s in select_specs(["protonet-1shot"])] == ["protonet-1shot"]
    assert {s.chapter for s in select_specs(["3"])} == {3} and select_specs(["lecture3"]) == select_specs(["3"])
    assert len(select_specs(["all"])) == len(SPECS) + len(STUDIES)
    assert [s.name for s in select_specs(["distillation"])] == ["distillation"]
    assert "transfer-cases" in [s.name for s in select_specs(["6"])]
    with pytest.raises(ValueError, match="unknown spec"):
        select_specs(["protonett"])
    with pytest.raises(ValueError, match="chapters with specs"):
        select_specs(["9"])


def test_fingerprint_changes_with_the_settings_not_with_the_seeds_or_the_budget():
    spec = SPECS["maml-1step"]
    from dataclasses import replace
    assert replace(spec, seeds=(5, 6, 7)).fingerprint() == spec.fingerprint()
    assert replace(spec, max_steps=spec.max_steps * 2).fingerprint() == spec.fingerprint()
    assert replace(spec, outer_lr=2e-3).fingerprint() != spec.fingerprint()


def test_a_record_stands_for_a_larger_budget_only_if_it_converged():
    from dataclasses import replace
    spec = replace(SPECS["maml-1step"], max_steps=4000)
    assert spec.budget_problem({"stopped": "converged", "steps": 1750, "max_steps": 3000}) is None
    assert spec.budget_problem({"stopped": "converged", "steps": 4000, "max_steps": 4000}) is None
    assert spec.budget_problem({"stopped": "budget", "steps": 4000, "max_steps": 4000}) is None
    assert "ran out of a budget of 3000" in spec.budget_problem({"stopped": "budget", "steps": 3000,
                                                                 "max_steps": 3000})
    assert "over the spec's budget" in spec.budget_problem({"stopped": "converged", "steps": 5000,
                                                            "max_steps": 6000})  # a budget was lowered
    assert spec.budget_problem({"stopped": "", "steps": 10, "max_steps": 4000}) is not None  # never finished


def test_a_converged_run_does_not_depend_on_its_budget(tiny_course):
    from mlcourse.data import course_data

    def run(n_steps):
        torch.manual_seed(0)
        learner = PrototypicalNetwork(Conv4(hidden=8))
        history = meta_train(learner, course_data("background"), n_steps=n_steps, n_way=3, k_shot=1, n_query=2,
                             val_set=course_data("validation"), val_every=2, val_episodes=5, patience=2,
                             device="cpu", progress=False)
        return history, learner.state_dict()

    short, short_weights = run(30)
    long, long_weights = run(300)
    assert short.stopped == long.stopped == "converged" and short.val_acc == long.val_acc
    assert all(torch.equal(v, long_weights[k]) for k, v in short_weights.items())


def test_train_command_errors_and_list(capsys):
    assert main(["train", "nope"]) == 2
    assert "unknown spec 'nope'" in capsys.readouterr().err
    assert main(["train", "3", "--list"]) == 0
    out = capsys.readouterr().out
    assert "maml-1step" in out and "protonet-1shot" not in out


def test_every_paper_number_has_a_test_of_its_spec_and_is_shown(tmp_path):
    for method, _, spec, numbers in PAPERS:
        keys = {SPECS[spec].test_key(shape) for shape in SPECS[spec].tests}
        assert set(numbers) <= keys, f"{method}: {spec} is not tested at {set(numbers) - keys}"
    rng = np.random.default_rng(0)
    _write(tmp_path, "relation-1shot", 0, rng.uniform(0.9, 1.0, 600))
    _write(tmp_path, "relation-1shot", 1, rng.uniform(0.9, 1.0, 600), stopped="budget", budget=100)  # stale
    table = papers_html(root=tmp_path, dataset="fontglot")
    assert "(trained at 1 shot)" in table and "1 seed)" in table and "not measured yet" in table


def test_train_lists_and_retrains_only_the_seeds_whose_records_do_not_stand(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    _write(tmp_path, "siamese-1shot", 0, rng.uniform(0.5, 0.8, 600), stopped="budget", budget=100)
    _write(tmp_path, "siamese-1shot", 1, rng.uniform(0.5, 0.8, 600))
    assert main(["train", "siamese-1shot", "--list", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "seed 0: to train: it ran out of a budget of 100 steps" in out
    assert "seed 1: trained, stands" in out and "seed 2: to train: no record" in out
    trained = []

    def fake_train(spec, seed, **kw):
        trained.append(seed)
        return {"training": {"stopped": "converged", "steps": 1, "seconds": 0.0}, "tests": {}}

    import mlcourse.experiments.runner as runner
    monkeypatch.setattr(runner, "train_spec", fake_train)
    assert main(["train", "siamese-1shot", "--stale", "--quiet", "--out", str(tmp_path)]) == 0
    assert trained == [0, 2]


# -- the stopping rule -----------------------------------------------------------------------------------------
def test_training_stops_when_validation_stops_progressing(tiny_course, tmp_path):
    from mlcourse.data import course_data

    torch.manual_seed(0)
    learner = PrototypicalNetwork(Conv4(hidden=8))
    kw = dict(n_steps=40, n_way=3, k_shot=1, n_query=2, outer_lr=0.0, val_set=course_data("validation"),
              val_every=2, val_episodes=5, patience=2, checkpoint=tmp_path / "run.pt", device="cpu", progress=False)
    history = meta_train(learner, course_data("background"), **kw)  # a learning rate of 0: no real progress
    assert history.stopped == "converged" and history.stale == 2 and history.step[-1] == history.val_step[-1] < 40
    acc, ref = history.val_acc, history.reference
    assert all(a <= sum(ref) for a in acc[-2:])  # the last two validations did not beat the reference's interval
    again = meta_train(learner, course_data("background"), **kw)  # a stopped run resumes as stopped
    assert again.stopped == "converged" and again.val_step == history.val_step
    assert meta_train(learner, course_data("background"), **{**kw, "patience": None, "checkpoint": None,
                                                              "n_steps": 4}).stopped == "budget"
    with pytest.raises(ValueError, match="patience"):
        meta_train(learner, course_data("background"), n_steps=4, patience=2, device="cpu", progress=False)


# -- the ledger's verdicts, on records made for the purpose ----------------------------------------------------
def _write(root, spec, seed, per_episode, stopped="converged", test="5-way 1-shot", fingerprint=None, budget=None):
    folder = root / "fontglot" / spec
    folder.mkdir(parents=True, exist_ok=True)
    acc = np.clip(per_episode, 0, 1)
    defined = SPECS.get(spec) or STUDIES[spec]
    fingerprint = fingerprint or defined.fingerprint()
    budget = budget or getattr(defined, "max_steps", None) or defined.max_epochs
    training = {"stopped": stopped, "steps": budget if stopped == "budget" else budget // 4, "max_steps": budget}
    record = {"spec": spec, "seed": seed, "quick": False, "dataset": "fontglot", "training": training,
              "fingerprint": fingerprint,
              "tests": {test: {"shape": [5, 1, 15], "seed": TEST_SEED, "mean": float(acc.mean()),
                               "half_width": 0.0, "per_episode": acc.tolist()}}}
    (folder / f"seed{seed}.json").write_text(json.dumps(record))


def _claim(kind="greater"):
    return Claim("a beats b", "a test", 2, "protonet-1shot", "siamese-1shot", kind=kind)


@pytest.mark.parametrize("gap, kind, expected", [(0.10, "greater", HOLDS), (-0.10, "greater", FAILS),
                                                 (0.0, "equal", HOLDS), (0.10, "equal", FAILS),
                                                 (0.0, "not_worse", HOLDS), (0.10, "not_worse", HOLDS),
                                                 (-0.10, "not_worse", FAILS)])
def test_ledger_decides_with_three_converged_seeds(tmp_path, gap, kind, expected):
    rng = np.random.default_rng(0)
    for seed in range(3):
        base = rng.uniform(0.5, 0.8, 600)
        _write(tmp_path, "siamese-1shot", seed, base)
        _write(tmp_path, "protonet-1shot", seed, base + gap + rng.normal(0, 0.01, 600))
    verdict = compare(_claim(kind), root=tmp_path, dataset="fontglot")
    assert verdict.verdict == expected and len(verdict.per_seed) == 3
    assert verdict.difference == pytest.approx(gap, abs=0.01)
    _write(tmp_path, "protonet-1shot", 2, rng.uniform(0.5, 0.8, 600), fingerprint="0" * 16)  # other settings
    stale = compare(_claim(kind), root=tmp_path, dataset="fontglot")
    assert len(stale.per_seed) == 2 and stale.verdict == OPEN  # the record of other settings is not counted


def test_ledger_does_not_decide_on_two_seeds_or_a_run_stopped_by_its_budget(tmp_path):
    rng = np.random.default_rng(0)
    for seed in range(2):
        base = rng.uniform(0.5, 0.8, 600)
        _write(tmp_path, "siamese-1shot", seed, base)
        _write(tmp_path, "protonet-1shot", seed, base + 0.1)
    assert "3 are needed" in compare(_claim(), root=tmp_path, dataset="fontglot").why
    _write(tmp_path, "siamese-1shot", 2, rng.uniform(0.5, 0.8, 600), stopped="budget")
    _write(tmp_path, "protonet-1shot", 2, rng.uniform(0.6, 0.9, 600))
    verdict = compare(_claim(), root=tmp_path, dataset="fontglot")
    assert verdict.verdict == OPEN and "budget" in verdict.why and "siamese-1shot seed 2" in verdict.why
    _write(tmp_path, "siamese-1shot", 2, rng.uniform(0.5, 0.8, 600), stopped="budget", budget=100)  # a smaller one
    smaller = compare(_claim(), root=tmp_path, dataset="fontglot")
    assert len(smaller.per_seed) == 2 and "3 are needed" in smaller.why  # it measures another experiment
    assert compare(_claim(), root=tmp_path / "empty", dataset="fontglot").verdict == MISSING


def test_every_claim_names_known_specs_and_tests_and_gets_a_verdict_from_the_shipped_records():
    for claim in CLAIMS:
        for name, tests in ((claim.a, claim.tests), (claim.b, claim.test_b or claim.tests)):
            if name is None:
                continue
            assert name in SPECS or name in STUDIES
            known = STUDIES[name].arms if name in STUDIES else {SPECS[name].test_key(s) for s in SPECS[name].tests}
            assert set(tests) <= set(known), claim.text
    found = verdicts(dataset="fontglot")
    assert len(found) == len(CLAIMS)
    for claim, verdict in found:
        assert verdict.verdict in (HOLDS, FAILS, OPEN, MISSING)
        trained = claim.a is not None and all(load_records(s, dataset="fontglot") for s in (claim.a, claim.b))
        assert (verdict.verdict != MISSING) == trained, claim.text
    assert ledger_html(dataset="fontglot").count("<tr>") == len(CLAIMS) + 1


def test_ledger_follows_the_records(tmp_path):
    """Copy the shipped records, change one: the verdict that reads it changes (the ledger is computed, not typed)."""
    src = results_dir() / "fontglot" / "protonet-1shot"
    assert src.exists(), "protonet-1shot's records are shipped"
    shutil.copytree(src, tmp_path / "fontglot" / "protonet-1shot")
    claim = CLAIMS[0]  # more ways lower accuracy: 5-way vs 20-way of protonet-1shot
    assert compare(claim, root=tmp_path, dataset="fontglot").verdict != MISSING
    for path in (tmp_path / "fontglot" / "protonet-1shot").glob("*.json"):
        r = json.loads(path.read_text())
        r["tests"]["20-way 1-shot"]["per_episode"] = r["tests"]["5-way 1-shot"]["per_episode"]
        r["tests"]["20-way 1-shot"]["mean"] = r["tests"]["5-way 1-shot"]["mean"]
        path.write_text(json.dumps(r))
    changed = compare(claim, root=tmp_path, dataset="fontglot")
    assert changed.difference == pytest.approx(0.0) and changed.verdict == OPEN


# -- studies: the supervised chapters' experiments -------------------------------------------------------------
SHIPPED_STUDIES = [r for name in STUDIES for r in load_records(name, dataset="fontglot")]


@pytest.mark.parametrize("name", ["distillation", "domain-digits"])
def test_studies_run_at_the_quick_budget(name, tiny_course, tmp_path):
    study = STUDIES[name]
    record = run_study(study, 0, quick=True, out=tmp_path, device="cpu", progress=False)
    assert record["quick"] and set(record["tests"]) == set(study.arms) and check_record(record) == []
    sizes = {len(t["per_episode"]) for t in record["tests"].values()}
    assert len(sizes) == 1 and sizes.pop() > 10  # every arm scored on the same test images
    assert load_records(name, root=tmp_path, dataset="fontglot") == []  # quick records never count


def test_the_multitask_study_runs_at_the_quick_budget(tiny_course, tmp_path):
    """Every arm scores the transfer study's "similar" test images, so the two studies pair image by image."""
    from mlcourse.experiments.studies import _similar_targets

    study = STUDIES["multitask"]
    record = run_study(study, 0, quick=True, out=tmp_path, device="cpu", progress=False)
    assert record["quick"] and set(record["tests"]) == set(study.arms) and check_record(record) == []
    character = {len(t["per_episode"]) for k, t in record["tests"].items() if not k.startswith("script")}
    assert character == {len(_similar_targets(study.options)["similar, small"][3])}
    arms = record["training"]["arms"]
    assert arms["small: multitask"]["weight"] in study.options["weight_grid"]
    assert set(arms["small: multitask"]["validation"]) == {f"{w:g}" for w in study.options["weight_grid"]}
    assert arms["large: fine_tune_all"]["lr"] in study.options["lr_grid"]


@pytest.mark.slow
def test_the_transfer_study_runs_at_the_quick_budget(tiny_course, tmp_path):
    record = run_study(STUDIES["transfer-cases"], 0, quick=True, out=tmp_path, device="cpu", progress=False)
    assert check_record(record) == [] and len(record["tests"]) == 20
    assert all(1 <= a["block"] <= 4 for k, a in record["training"]["arms"].items() if k.endswith("block_probe"))


@pytest.mark.parametrize("record", SHIPPED_STUDIES, ids=[f"{r['spec']}-seed{r['seed']}" for r in SHIPPED_STUDIES])
def test_shipped_study_records_match_their_study(record):
    assert not record["quick"] and check_record(record) == []


def test_a_study_record_with_a_broken_arm_is_reported(tiny_course, tmp_path):
    record = run_study(STUDIES["domain-digits"], 0, quick=True, out=tmp_path, device="cpu", progress=False)
    broken = json.loads(json.dumps(record))
    broken["tests"]["dann"]["per_episode"][0] = 0.5
    assert any("arm 'dann'" in p for p in check_record(broken))
    del broken["tests"]["mmd"]
    assert any("arms missing" in p for p in check_record(broken))
    assert any("other settings" in p for p in check_record({**record, "fingerprint": "0" * 16}))


def test_a_study_claim_is_paired_over_the_same_test_images(tmp_path):
    """Two arms of one record are compared image by image: a small but consistent gain decides."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "fontglot" / "domain-digits"
    folder.mkdir(parents=True)
    for seed in range(3):
        base = (rng.uniform(size=900) < 0.7).astype(float)
        better = base.copy()
        better[np.flatnonzero(base == 0)[:30]] = 1  # right on 30 more images, wrong on none more
        tests = {arm: {"shape": [900], "seed": 0, "mean": float(v.mean()), "half_width": 0.0, "per_episode": v.tolist()}
                 for arm, v in (("source_only", base), ("dann", better))}
        (folder / f"seed{seed}.json").write_text(json.dumps({"spec": "domain-digits", "seed": seed, "quick": False,
                                                             "fingerprint": STUDIES["domain-digits"].fingerprint(),
                                                             "training": {"stopped": "converged"}, "tests": tests}))
    claim = next(c for c in CLAIMS if c.a == "domain-digits" and c.tests == ("dann",))
    verdict = compare(claim, root=tmp_path, dataset="fontglot")
    assert verdict.verdict == HOLDS and verdict.difference == pytest.approx(30 / 900)
    assert all(h < 0.02 for _, h in verdict.per_seed)  # independent intervals would be about 0.04 wide


def test_supervised_loops_stop_when_the_training_loss_stops_falling():
    from mlcourse.backbones import MLP
    from mlcourse.training import LossPlateau
    from mlcourse.transfer import fine_tune

    x, y = torch.randn(64, 5), torch.randint(0, 2, (64,))
    torch.manual_seed(0)
    model = MLP([5, 16, 2])
    h = fine_tune(model, x, y, epochs=500, lr=1e-2, patience=3, progress=False)
    assert h.stopped == "converged" and len(h.loss) < 500
    assert fine_tune(MLP([5, 16, 2]), x, y, epochs=2, progress=False).stopped == "budget"
    with pytest.raises(ValueError, match="patience"):
        LossPlateau(patience=0)


def test_a_black_box_on_a_frozen_encoder_trains_only_its_own_layers(tiny_course, tmp_path):
    """The pretrained variant copies ProtoNet's encoder of the same seed in and never changes it."""
    runs = tiny_course / "runs" / "quick" / "fontglot"
    shutil.rmtree(runs / "averaging-pretrained", ignore_errors=True)  # no resume of another test's run
    protonet = train_spec(SPECS["protonet-1shot"], 0, quick=True, out=tmp_path, device="cpu", progress=False)
    record = train_spec(SPECS["averaging-pretrained"], 0, quick=True, out=tmp_path, device="cpu", progress=False)
    used = record["training"]["encoder_from"]
    weights, _ = record_paths("protonet-1shot", 0, root=tmp_path, dataset=protonet["dataset"])
    assert used["spec"] == "protonet-1shot" and used["seed"] == 0
    assert used["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    source = load_learner("protonet-1shot", 0, root=tmp_path, dataset=protonet["dataset"]).backbone.state_dict()
    learner = load_learner("averaging-pretrained", 0, root=tmp_path, dataset=record["dataset"])
    for key, value in learner.encoder.encoder.state_dict().items():
        assert torch.equal(value, source[key]), key  # weights and BatchNorm statistics untouched by training
    assert not any(p.requires_grad for p in learner.encoder.parameters())
    assert any(p.requires_grad for p in learner.classifier.parameters())
    with pytest.raises(FileNotFoundError, match="train it first with `mlcourse train protonet-1shot --seeds 7`"):
        train_spec(SPECS["averaging-pretrained"], 7, quick=True, out=tmp_path, device="cpu", progress=False)
    # ProtoNet retrained: the old run state is not resumed, the new run builds on the new encoder
    train_spec(SPECS["protonet-1shot"], 1, quick=True, out=tmp_path, device="cpu", progress=False)
    shutil.copy(record_paths("protonet-1shot", 1, root=tmp_path, dataset="fontglot")[0], weights)
    again = train_spec(SPECS["averaging-pretrained"], 0, quick=True, out=tmp_path, device="cpu", progress=False)
    assert again["training"]["encoder_from"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    new = load_learner("protonet-1shot", 0, root=tmp_path, dataset="fontglot").backbone.state_dict()
    inside = load_learner("averaging-pretrained", 0, root=tmp_path, dataset="fontglot").encoder.encoder.state_dict()
    assert all(torch.equal(v, new[k]) for k, v in inside.items())
    # a full record whose encoder checkpoint changed since is reported
    full = {**again, "quick": False}
    assert not any("encoder" in p for p in check_record(full, root=tmp_path))
    torch.save({k: v + 1 for k, v in new.items()}, weights)
    assert any("no longer the shipped one" in p for p in check_record(full, root=tmp_path))


def test_a_frozen_encoder_stays_in_eval_mode_and_passes_no_gradient():
    encoder = FrozenEncoder(Conv4(hidden=8))
    model = torch.nn.Sequential(encoder, torch.nn.Linear(8, 2)).train()
    assert model.training and not encoder.encoder.training
    out = model(torch.randn(4, 1, 28, 28))
    out.sum().backward()
    assert all(p.grad is None for p in encoder.parameters()) and model[1].weight.grad is not None
    with pytest.raises(TypeError, match="out_features"):
        FrozenEncoder(torch.nn.ReLU())


def test_the_transfer_source_network_is_tied_to_its_record(tiny_course, tmp_path, monkeypatch):
    """The shipped source network is the file its record names; another file or none is refused."""
    from mlcourse.experiments import studies
    from mlcourse.transfer import TransferNet

    net = TransferNet(Conv4(hidden=32), 32, 7)
    hits = {"shape": [4], "mean": 0.5, "half_width": 0.5, "seed": 0, "per_episode": [0, 1, 0, 1]}
    fake = lambda *args: ({a: hits for a in STUDIES["transfer-cases"].arms},  # noqa: E731
                          {a: {"stopped": "converged"} for a in STUDIES["transfer-cases"].arms},
                          {"source": net.state_dict()}, {"source": {"epochs": 1, "loss": [1.0]}})
    monkeypatch.setitem(studies._RUNS, "transfer", fake)
    record = run_study(STUDIES["transfer-cases"], 0, out=tmp_path, device="cpu", progress=False)
    assert record["training"]["weights"]["source"]["file"] == "seed0.source.pt"
    assert check_record(record, root=tmp_path) == []
    loaded = studies.load_transfer_source(0, root=tmp_path)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in loaded.state_dict().items())
    path = tmp_path / record["dataset"] / "transfer-cases" / "seed0.source.pt"
    torch.save(TransferNet(Conv4(hidden=32), 32, 7).state_dict(), path)  # another network under its name
    assert any("source network unusable" in p for p in check_record(record, root=tmp_path))
    path.unlink()
    with pytest.raises(FileNotFoundError, match="mlcourse train transfer-cases --seeds 0"):
        studies.load_transfer_source(0, root=tmp_path)


def test_every_learner_spec_has_a_family_and_a_row_in_the_comparison():
    from mlcourse.experiments.ledger import FAMILIES, FAMILY_REFERENCE, FAMILY_TESTS, families_html, family_rows
    from mlcourse.metric import pixel_nearest_neighbour

    listed = [name for specs in FAMILIES.values() for name in specs]
    assert len(listed) == len(set(listed)) and set(listed) <= set(SPECS)
    ablations = {name for name, spec in SPECS.items() if spec.train_classes is not None}
    assert set(SPECS) - set(listed) == ablations  # a new learner spec must be placed in a family
    rows = family_rows(dataset="fontglot", memory=False)
    pixel, rows = rows[0], rows[1:]
    assert [r["spec"] for r in rows] == listed
    for row in rows:
        records = [r for r in load_records(row["spec"], dataset="fontglot")]
        assert row["seeds"] == len(current_records(row["spec"], dataset="fontglot")) <= len(records)
        assert row["filters"] in FAMILY_REFERENCE
        for test in FAMILY_TESTS:
            s = row["tests"][test]
            tested = any(test in r["tests"] for r in current_records(row["spec"], dataset="fontglot"))
            assert (s is not None) == tested
            v = row["against_protonet"][test]
            if v is not None and v.per_seed:  # the paired difference against ProtoNet on the same episodes
                assert len(v.per_seed) <= row["seeds"]
    # the pixel baseline is scored on the records' own test episodes: its difference against ProtoNet's seed 0
    # equals the one computed from the two accuracies, episode by episode
    evaluation = FontGlot("evaluation", preset="full", progress=False)
    assert pixel["spec"] == "pixel" and pixel["seeds"] == 0
    again = evaluate(pixel_nearest_neighbour, evaluation, n_way=5, k_shot=1, n_query=15, n_episodes=600,
                     seed=TEST_SEED, device="cpu")
    assert pixel["tests"]["5-way 1-shot"].mean == pytest.approx(again.mean)
    reference = current_records("protonet-1shot", dataset="fontglot")
    difference = np.mean(again.per_episode - np.array(reference[0]["tests"]["5-way 1-shot"]["per_episode"]))
    assert pixel["against_protonet"]["5-way 1-shot"].per_seed[0][0] == pytest.approx(difference, abs=1e-4)
    assert families_html(dataset="fontglot", memory=False).count("<tr>") == len(listed) + 2


def test_backbone_widths_and_the_memory_of_one_outer_step(tiny_root):
    from mlcourse.experiments.footprint import backbone_filters, training_memory

    background = FontGlot("background", preset="tiny", root=tiny_root, progress=False)
    widths = {name: backbone_filters(build_learner(SPECS[name], n_classes=10))
              for name in ("protonet-1shot", "protonet32-1shot", "maml-1step", "attention", "averaging-pretrained")}
    assert widths == {"protonet-1shot": 64, "protonet32-1shot": 32, "maml-1step": 32, "attention": 32,
                      "averaging-pretrained": 64}
    memory = {name: training_memory(name, background) for name in
              ("protonet-1shot", "protonet32-1shot", "maml-1step", "maml-5step", "fomaml-5step")}
    assert memory["protonet32-1shot"] < memory["protonet-1shot"]  # half the filters, about half the activations
    assert memory["maml-5step"] > memory["maml-1step"]  # second order keeps every inner step's graph alive
    assert memory["fomaml-5step"] < memory["maml-5step"]
    state = torch.random.get_rng_state()
    assert training_memory("maml-1step", background) == memory["maml-1step"]  # deterministic
    assert torch.equal(torch.random.get_rng_state(), state)  # and the global random stream is left alone
    assert training_memory("protomaml-1step", background) is None  # torch.func refuses the counting hooks
    with pytest.raises(ValueError, match="unknown spec"):
        training_memory("no-such-spec", background)
