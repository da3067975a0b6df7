"""Calibration: the expected calibration error against its definition, temperature scaling's fixed points."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlcourse.backbones import Conv4
from mlcourse.calibration import episode_scores, expected_calibration_error, fit_temperature
from mlcourse.evaluation import evaluate
from mlcourse.metric import PrototypicalNetwork, open_set_evaluation


def test_ece_by_hand():
    # two bins used: confidence 0.9 (right, right, wrong: accuracy 2/3) and 0.6 (right: accuracy 1)
    probs = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.6, 0.4]])
    labels = torch.tensor([0, 1, 1, 0])
    expected = 3 / 4 * abs(2 / 3 - 0.9) + 1 / 4 * abs(1 - 0.6)
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(expected)


def test_ece_is_zero_when_confidence_is_the_accuracy_and_one_when_all_confident_and_wrong():
    probs = torch.tensor([[0.75, 0.25]] * 4)
    assert expected_calibration_error(probs, torch.tensor([0, 0, 0, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(torch.tensor([[1.0, 0.0]] * 3), torch.tensor([1, 1, 1])) == pytest.approx(1.0)


def test_fitted_temperature_recovers_the_one_that_made_the_labels():
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(20000, 5, generator=g)
    labels = torch.multinomial(F.softmax(logits / 2.5, dim=1), 1, generator=g).squeeze(1)  # labels drawn at T = 2.5
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.05)
    probs = F.softmax(logits / fit_temperature(logits, labels), dim=1)
    assert expected_calibration_error(probs, labels) < 0.02 < expected_calibration_error(F.softmax(logits, 1), labels)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="probs must be"):
        expected_calibration_error(torch.ones(3), torch.zeros(3))
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error(torch.ones(3, 2) / 2, torch.zeros(3, dtype=torch.long), n_bins=0)
    with pytest.raises(ValueError, match="logits must be"):
        fit_temperature(torch.ones(0, 2), torch.zeros(0, dtype=torch.long))


def test_episode_scores_are_the_evaluators_episodes(tiny_eval):
    torch.manual_seed(0)
    model = PrototypicalNetwork(Conv4(hidden=8)).eval()
    scores, labels = episode_scores(model, tiny_eval, n_episodes=5, seed=3, device="cpu")
    assert scores.shape == (5 * 75, 5) and labels.shape == (375,)
    per_episode = (scores.argmax(1) == labels).float().view(5, 75).mean(1).numpy()
    result = evaluate(model, tiny_eval, n_way=5, k_shot=1, n_query=15, n_episodes=5, seed=3, device="cpu")
    np.testing.assert_allclose(per_episode, result.per_episode, atol=1e-6)


def test_open_set_adds_the_calibrated_max_softmax_on_the_same_episodes(tiny_eval):
    torch.manual_seed(0)
    model = PrototypicalNetwork(Conv4(hidden=8)).eval()
    raw = open_set_evaluation(model, tiny_eval, n_episodes=4, seed=1, device="cpu")
    cal = open_set_evaluation(model, tiny_eval, n_episodes=4, seed=1, device="cpu", temperature=1.0)
    assert "max_softmax_calibrated" not in raw
    np.testing.assert_allclose(cal["max_softmax_calibrated"]["per_episode"], raw["max_softmax"]["per_episode"])
    assert len(cal["nearest_distance"]["per_episode"]) == 4
    with pytest.raises(ValueError, match="temperature must be positive"):
        open_set_evaluation(model, tiny_eval, n_episodes=1, device="cpu", temperature=0.0)


def test_episode_scores_refuse_a_learner_without_scores_and_an_impossible_episode(tiny_eval):
    from mlcourse.optimization import MAML
    from mlcourse.experiments.specs import conv4_classifier

    with pytest.raises(TypeError, match="needs an embedding learner"):
        episode_scores(MAML(conv4_classifier()), tiny_eval, n_episodes=1, device="cpu")
    with pytest.raises(ValueError):
        episode_scores(PrototypicalNetwork(Conv4(hidden=8)), tiny_eval, n_way=10_000, n_episodes=1, device="cpu")
