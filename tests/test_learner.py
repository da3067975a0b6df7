"""Every learner of the course satisfies the one protocol, and the one loop trains each of them."""
import numpy as np
import pytest
import torch
from torch import nn

from mlcourse.backbones import Conv4
from mlcourse.blackbox import AveragingLearner, RecurrentLearner
from mlcourse.episodes import Episode
from mlcourse.evaluation import evaluate
from mlcourse.learner import EmbeddingLearner, StepResult, check_learner, is_learner
from mlcourse.metric import PrototypicalNetwork, RelationNetwork, SiameseNetwork
from mlcourse.optimization import MAML, MetaSGD, Reptile
from mlcourse.training import meta_train

N_WAY = 3


def _gradient_net():
    return nn.Sequential(Conv4(hidden=8, track_running_stats=False, channels_last=False), nn.Linear(8, N_WAY))


LEARNERS = {
    "protonet": lambda: PrototypicalNetwork(Conv4(hidden=8)),
    "siamese": lambda: SiameseNetwork(Conv4(hidden=8), embedding_dim=8),
    "relation": lambda: RelationNetwork(hidden=8, relation_dim=4),
    "maml": lambda: MAML(_gradient_net(), inner_lr=0.4),
    "fomaml": lambda: MAML(_gradient_net(), inner_lr=0.4, first_order=True),
    "metasgd": lambda: MetaSGD(_gradient_net(), inner_lr=0.4),
    "reptile": lambda: Reptile(_gradient_net(), inner_lr=0.1, inner_steps=2),
    "recurrent": lambda: RecurrentLearner(n_way=N_WAY, hidden=16, encoder=Conv4(hidden=8)),
    "averaging": lambda: AveragingLearner(n_way=N_WAY, hidden=16, encoder=Conv4(hidden=8)),
}
METRIC = {"protonet", "siamese", "relation"}


def make(kind):
    torch.manual_seed(0)
    return LEARNERS[kind]()


@pytest.fixture(scope="module")
def background(tiny_root):
    from mlcourse.data import FontGlot

    return FontGlot("background", preset="tiny", root=tiny_root, progress=False)


def _episode(n_way=N_WAY, k_shot=2, n_query=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Episode(torch.rand(n_way * k_shot, 1, 28, 28, generator=g), torch.arange(n_way).repeat_interleave(k_shot),
                   torch.rand(n_way * n_query, 1, 28, 28, generator=g), torch.arange(n_way).repeat_interleave(n_query),
                   torch.arange(n_way))


@pytest.mark.parametrize("kind", LEARNERS)
def test_every_learner_satisfies_the_protocol(kind):
    learner = make(kind)
    assert is_learner(learner)
    check_learner(learner)  # does not raise
    assert isinstance(learner, EmbeddingLearner) == (kind in METRIC)
    ep = _episode()
    pred = learner.predict(ep)
    assert pred.shape == (N_WAY * 3,) and pred.dtype == torch.int64
    assert int(pred.min()) >= 0 and int(pred.max()) < N_WAY
    opt = torch.optim.SGD(learner.parameters(), lr=1e-2)
    result = learner.meta_step([ep, _episode(seed=1)], opt)
    assert isinstance(result, StepResult) and isinstance(result.loss, float) and np.isfinite(result.loss)
    loss, outputs = result  # a NamedTuple: unpacks as (loss, outputs)
    assert len(outputs) == 2 and all(o.shape == (N_WAY * 3, N_WAY) and not o.requires_grad for o in outputs)


@pytest.mark.parametrize("kind", LEARNERS)
def test_meta_train_trains_every_learner(kind, background, tiny_eval):
    learner = make(kind)
    before = {n: p.detach().clone() for n, p in learner.named_parameters()}
    extra = dict(optimizer="sgd", outer_lr=1.0) if kind == "reptile" else dict(outer_lr=1e-3)
    h = meta_train(learner, background, n_steps=2, meta_batch_size=2, n_way=N_WAY, k_shot=1, n_query=2,
                   val_set=tiny_eval, val_every=2, val_episodes=2, device="cpu", progress=False, **extra)
    assert h.step == [1, 2] and all(np.isfinite(h.loss)) and all(0 <= a <= 1 for a in h.acc)
    assert h.val_step == [2] and 0 <= h.val_acc[0] <= 1 and h.best_step == 2
    changed = [n for n, p in learner.named_parameters() if not torch.equal(p, before[n])]
    assert changed, f"{kind}: meta_train changed no parameter"
    result = evaluate(learner, tiny_eval, n_way=N_WAY, k_shot=1, n_query=2, n_episodes=3, device="cpu")
    assert result.per_episode.shape == (3,)


class _OnlyMetaStep(nn.Module):
    def meta_step(self, tasks, optimizer):
        return StepResult(0.0, [])


class _OnlyPredict(nn.Module):
    def predict(self, episode):
        return episode.query_y


def test_check_learner_names_what_is_missing():
    with pytest.raises(TypeError, match=r"_OnlyMetaStep is not a learner: it lacks predict \("):
        check_learner(_OnlyMetaStep())
    with pytest.raises(TypeError, match=r"it lacks meta_step \("):
        check_learner(_OnlyPredict())
    with pytest.raises(TypeError, match="lacks meta_step, predict"):
        check_learner(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="must be a torch.nn.Module, got function"):
        check_learner(lambda episode: episode.query_y)
    assert not is_learner(_OnlyMetaStep()) and not is_learner(_OnlyPredict()) and not is_learner(nn.Linear(2, 2))
    assert not is_learner(lambda episode: episode.query_y)  # a function baseline is evaluated, not trained

