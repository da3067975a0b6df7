"""The attention learner: order invariant, inductive by its mask, reading the support labels."""
import pytest
import torch

from mlcourse.backbones import Conv4
from mlcourse.blackbox import AttentionLearner, shuffle_support
from mlcourse.data import FontGlot
from mlcourse.episodes import Episode
from mlcourse.evaluation import evaluate
from mlcourse.training import meta_train


def episode(n_way=5, k_shot=2, n_query=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Episode(torch.rand(n_way * k_shot, 1, 28, 28, generator=g), torch.arange(n_way).repeat_interleave(k_shot),
                   torch.rand(n_way * n_query, 1, 28, 28, generator=g), torch.arange(n_way).repeat_interleave(n_query),
                   torch.arange(n_way))


def small():
    torch.manual_seed(0)
    return AttentionLearner(n_way=5, hidden=32, heads=4, encoder=Conv4(hidden=16)).eval()


def test_mask_lets_queries_read_the_support_and_themselves_only():
    blocked = AttentionLearner.attention_mask(3, 2)
    allowed = ~blocked
    assert allowed[:, :3].all()  # everyone reads the support set
    assert allowed[3:, 3:].tolist() == [[True, False], [False, True]]  # a query reads itself, not the others
    assert not allowed[:3, 3:].any()  # the support never reads the queries


def test_the_answer_does_not_depend_on_the_support_order():
    model, task = small(), episode()
    with torch.no_grad():
        a = model.forward_task(task)
        b = model.forward_task(shuffle_support(task, torch.Generator().manual_seed(3)))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_a_query_answer_does_not_depend_on_the_other_queries():
    model, task = small(), episode()
    with torch.no_grad():
        together = model.forward_task(task)
        alone = torch.cat([model.forward_task(Episode(task.support_x, task.support_y, task.query_x[i:i + 1],
                                                      task.query_y[i:i + 1], task.classes))
                           for i in range(len(task.query_y))])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


def test_the_answer_reads_the_support_labels():
    model, task = small(), episode()
    relabelled = Episode(task.support_x, (task.support_y + 1) % 5, task.query_x, task.query_y, task.classes)
    with torch.no_grad():
        assert not torch.allclose(model.forward_task(task), model.forward_task(relabelled))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="multiple of heads"):
        AttentionLearner(n_way=5, hidden=30, heads=4, encoder=Conv4(hidden=16))


@pytest.mark.slow
def test_learns_above_chance_and_falls_to_chance_when_the_support_labels_are_shuffled(tiny_root, tiny_eval):
    background = FontGlot("background", preset="tiny", root=tiny_root, progress=False)
    torch.manual_seed(0)
    model = AttentionLearner(n_way=5, hidden=64, heads=4, encoder=Conv4(hidden=32))
    # 300 steps leave it at 0.29-0.58 over seeds 0-2; 600 reach 0.74-0.78 (chance is 0.2)
    meta_train(model, background, n_steps=600, meta_batch_size=8, n_way=5, k_shot=[1, 2, 3], n_query=5, seed=0,
               device="cpu", progress=False)
    result = evaluate(model, tiny_eval, n_way=5, k_shot=3, n_query=5, n_episodes=100, seed=3, device="cpu")
    assert result.mean - result.half_width > 0.2 + 0.15, result  # chance is 0.2

    def shuffled_labels(task):
        perm = torch.randperm(len(task.support_y), generator=torch.Generator().manual_seed(int(task.classes.sum())))
        return model.predict(Episode(task.support_x, task.support_y[perm], task.query_x, task.query_y, task.classes))

    chance = evaluate(shuffled_labels, tiny_eval, n_way=5, k_shot=3, n_query=5, n_episodes=100, seed=3, device="cpu")
    assert chance.mean - chance.half_width < 0.2 < chance.mean + chance.half_width + 0.05, chance
