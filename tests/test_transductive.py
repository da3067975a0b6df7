"""Inductive or transductive at test time: does a query's answer depend on the other queries of its episode?"""
import pytest
import torch

from mlcourse.episodes import labels_of
from mlcourse.evaluation import evaluate, query_dependence
from mlcourse.experiments import SPECS, build_learner
from mlcourse.optimization import GradientLearner

# The MAML family normalises with the statistics of the current batch (as the reference code does): with
# all queries in one batch its answers depend on the other queries. Every other learner must not.
from mlcourse.experiments.ledger import TRANSDUCTIVE_KINDS

TRANSDUCTIVE = {name for name, spec in SPECS.items() if spec.learner in TRANSDUCTIVE_KINDS}


def _learner(name, tiny_root):
    from mlcourse.data import FontGlot

    background = FontGlot("background", preset="tiny", root=tiny_root, progress=False)
    torch.manual_seed(0)
    spec = SPECS[name]
    options = {k: v for k, v in spec.options.items() if k != "encoder_from"}  # a random frozen encoder will do
    if "encoder_from" in spec.options:
        from dataclasses import replace
        spec = replace(spec, options=options)
    return build_learner(spec, n_classes=int(labels_of(background).max()) + 1), spec


@pytest.mark.parametrize("name", sorted(set(SPECS) - TRANSDUCTIVE))
def test_no_other_learner_lets_a_query_depend_on_the_other_queries(name, tiny_root, tiny_eval):
    learner, spec = _learner(name, tiny_root)
    assert query_dependence(learner, tiny_eval, n_query=3, n_episodes=2, seed=1, device="cpu", **spec.test_options) == 0.0


@pytest.mark.parametrize("name", sorted(TRANSDUCTIVE))
def test_the_maml_family_is_transductive_together_and_inductive_with_the_support(name, tiny_root, tiny_eval):
    learner, spec = _learner(name, tiny_root)
    assert isinstance(learner, GradientLearner)
    options = dict(spec.test_options)
    assert query_dependence(learner, tiny_eval, n_query=3, n_episodes=2, seed=1, device="cpu", **options) > 0.0
    assert query_dependence(learner, tiny_eval, n_query=3, n_episodes=2, seed=1, device="cpu", queries="with_support",
                            **options) == 0.0


def test_with_support_normalises_each_query_with_the_support_images_only(tiny_root, tiny_eval):
    import numpy as np

    from mlcourse.episodes import draw_episode

    learner, _ = _learner("maml-1step", tiny_root)
    episode = draw_episode(tiny_eval, n_way=5, k_shot=1, n_query=2, rng=np.random.default_rng(0))
    out = learner.adapted_output(episode, inner_steps=2, queries="with_support")
    params = learner.adapt(episode.support_x, episode.support_y, inner_steps=2, track_meta_grad=False)
    with torch.no_grad():
        for i, x in enumerate(episode.query_x):
            torch.testing.assert_close(out[i], learner(torch.cat([episode.support_x, x[None]]), params)[-1])
        together = learner(episode.query_x, params)
    assert not torch.allclose(out, together)  # the query batch's own statistics give other outputs
    torch.testing.assert_close(learner.adapted_output(episode, inner_steps=2), together)
    with pytest.raises(ValueError, match="queries must be 'together' or 'with_support'"):
        evaluate(learner, tiny_eval, n_way=5, k_shot=1, n_query=3, n_episodes=1, seed=2, device="cpu", queries="one")
