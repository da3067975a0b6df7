"""Baseline, Baseline++ and SimpleShot: a pretrained classifier, then a head (or a rule) per episode."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mlcourse.backbones import Conv4
from mlcourse.episodes import Episode
from mlcourse.evaluation import evaluate
from mlcourse.learner import is_learner
from mlcourse.metric import prototype_logits
from mlcourse.training import meta_train
from mlcourse.transfer import CosineClassifier, PretrainedClassifier, fit_episode_head


def _task(classes, k_shot=1, n_query=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = len(classes)
    return Episode(torch.rand(n * k_shot, 1, 28, 28, generator=g), torch.arange(n).repeat_interleave(k_shot),
                   torch.rand(n * n_query, 1, 28, 28, generator=g), torch.arange(n).repeat_interleave(n_query),
                   torch.tensor(classes))


def test_cosine_head_logits_are_scaled_cosines():
    head = CosineClassifier(8, 4, scale=10.0)
    z = torch.randn(5, 8, dtype=torch.float64)
    head = head.double()
    expected = torch.stack([torch.stack([10.0 * F.cosine_similarity(zi, w, dim=0) for w in head.weight]) for zi in z])
    torch.testing.assert_close(head(z), expected)
    torch.testing.assert_close(head(3.0 * z), head(z))  # the norm of a feature does not matter


def test_pretraining_uses_the_original_class_ids():
    torch.manual_seed(0)
    model = PretrainedClassifier(Conv4(hidden=8), n_classes=10)
    assert is_learner(model)
    tasks = [_task([7, 2, 9]), _task([0, 5, 1], seed=1)]
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # a step that changes nothing: the loss can be recomputed
    result = model.meta_step(tasks, opt)
    x = torch.cat([torch.cat([t.support_x, t.query_x]) for t in tasks])
    y = torch.tensor([7, 2, 9, 7, 7, 2, 2, 9, 9, 0, 5, 1, 0, 0, 5, 5, 1, 1])
    with torch.no_grad():
        model.train()
        logits = model.classifier(model.embed(x))
    assert result.loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    # the outputs are the queries' logits for each episode's own classes, in episode order
    torch.testing.assert_close(result.outputs[0], logits[3:9][:, [7, 2, 9]])
    assert result.outputs[1].shape == (6, 3)


def test_a_class_id_outside_the_classifier_is_refused():
    model = PretrainedClassifier(Conv4(hidden=8), n_classes=5)
    with pytest.raises(ValueError, match="outside the 5 classes"):
        model.meta_step([_task([1, 7, 2])], torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="rule must be one of"):
        PretrainedClassifier(Conv4(hidden=8), n_classes=5, rule="knn")
    with pytest.raises(ValueError, match="n_classes"):
        PretrainedClassifier(Conv4(hidden=8), n_classes=1)


def test_simpleshot_is_the_nearest_centred_normalised_mean():
    model = PretrainedClassifier(Conv4(hidden=8), n_classes=5, rule="simpleshot").eval()
    model.feature_mean.copy_(torch.randn(8))
    s, q = torch.randn(6, 8), torch.randn(4, 8)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    c = lambda v: (v - model.feature_mean) / (v - model.feature_mean).norm(dim=1, keepdim=True)  # noqa: E731
    means = torch.stack([c(s)[y == k].mean(0) for k in range(3)])
    torch.testing.assert_close(model.scores(s, y, q, 3), prototype_logits(c(q), means))
    # the backbone is never touched: scaling a centred feature does not change its normalised direction
    mu = model.feature_mean
    torch.testing.assert_close(model.scores(mu + 2 * (s - mu), y, mu + 3 * (q - mu), 3), model.scores(s, y, q, 3))


def test_the_feature_mean_follows_the_training_batches():
    torch.manual_seed(0)
    model = PretrainedClassifier(Conv4(hidden=8), n_classes=10, rule="simpleshot", mean_momentum=1.0)
    task = _task([1, 2, 3])
    model.meta_step([task], torch.optim.SGD(model.parameters(), lr=0.0))
    with torch.no_grad():
        z = model.embed(torch.cat([task.support_x, task.query_x]))  # still in training mode
    torch.testing.assert_close(model.feature_mean, z.mean(0))


@pytest.mark.parametrize("cosine", [False, True], ids=["linear", "cosine"])
def test_episode_head_fits_separable_support_and_is_deterministic(cosine):
    g = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(4, 16, generator=g)
    y = torch.arange(4).repeat_interleave(3)
    z = centres[y] + 0.1 * torch.randn(12, 16, generator=g)
    head = fit_episode_head(z, y, 4, cosine=cosine, scale=10.0)
    assert torch.equal(head(z).argmax(1), y)
    assert F.cross_entropy(head(z), y).item() < 0.1
    torch.testing.assert_close(fit_episode_head(z, y, 4, cosine=cosine, scale=10.0)(z), head(z))


def test_scores_fit_a_head_per_episode_under_no_grad():
    model = PretrainedClassifier(Conv4(hidden=8), n_classes=5).eval()
    s = torch.randn(6, 8)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():  # as the evaluator calls it
        scores = model.scores(s, y, s, 3)
    assert scores.shape == (6, 3)
    torch.testing.assert_close(scores, fit_episode_head(s, y, 3)(s))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the learner itself is unchanged


@pytest.mark.slow
@pytest.mark.parametrize("rule", ["linear", "cosine", "simpleshot"])
def test_pretrained_classifiers_learn_above_chance(rule, tiny_root, tiny_eval):
    from mlcourse.data import FontGlot
    from mlcourse.episodes import labels_of

    background = FontGlot("background", preset="tiny", root=tiny_root, progress=False)
    torch.manual_seed(0)
    model = PretrainedClassifier(Conv4(), n_classes=int(labels_of(background).max()) + 1, rule=rule)
    meta_train(model, background, n_steps=80, meta_batch_size=4, n_way=5, k_shot=1, n_query=15, seed=0,
               device="cpu", progress=False)
    result = evaluate(model, tiny_eval, n_way=5, k_shot=1, n_query=15, n_episodes=100, seed=3, device="cpu")
    assert result.mean - result.half_width > 0.2 + 0.25, result  # chance is 0.2


def test_simpleshot_centre_is_the_final_models_mean_over_the_training_images(tiny_root):
    from mlcourse.data import FontGlot
    from mlcourse.episodes import labels_of
    from mlcourse.evaluation import embed_dataset

    background = FontGlot("background", preset="tiny", root=tiny_root, progress=False)
    torch.manual_seed(0)
    model = PretrainedClassifier(Conv4(hidden=8), n_classes=int(labels_of(background).max()) + 1, rule="simpleshot")
    meta_train(model, background, n_steps=3, n_way=5, k_shot=1, n_query=3, seed=0, device="cpu", progress=False)
    torch.testing.assert_close(model.feature_mean, embed_dataset(model, background, device="cpu").mean(0))


def test_fitting_a_head_leaves_the_global_random_stream_alone():
    z, y = torch.randn(6, 8), torch.tensor([0, 0, 1, 1, 2, 2])
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    fit_episode_head(z, y, 3), fit_episode_head(z, y, 3, cosine=True)
    torch.testing.assert_close(torch.rand(3), expected)
