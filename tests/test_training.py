import pytest
import torch

from mlcourse.backbones import Conv4
from mlcourse.episodes import EpisodeSampler
from mlcourse.evaluation import evaluate_episodes
from mlcourse.metric import PrototypicalNetwork
from mlcourse.training import evaluate_model, train_episodic


@pytest.fixture(scope="module")
def background(tiny_root):
    from mlcourse.data import FontGlot

    return FontGlot("background", preset="tiny", root=tiny_root, progress=False)


def _model():
    torch.manual_seed(0)
    return PrototypicalNetwork(Conv4(hidden=16))


def test_resume_after_interruption_equals_uninterrupted(background, tiny_eval, tmp_path):
    kwargs = dict(n_way=3, k_shot=1, n_query=2, n_episodes=20, val_set=tiny_eval, val_every=5, val_episodes=5,
                  seed=0, device="cpu", progress=False)
    straight = _model()
    h1 = train_episodic(straight, background, **kwargs)

    interrupted = _model()
    calls = {"n": 0}
    original = interrupted.episode_loss

    def crash_at_13(episode):
        calls["n"] += 1
        if calls["n"] == 13:
            raise KeyboardInterrupt
        return original(episode)

    interrupted.episode_loss = crash_at_13
    with pytest.raises(KeyboardInterrupt):
        train_episodic(interrupted, background, checkpoint=tmp_path / "ckpt.pt", **kwargs)
    resumed = _model()
    h2 = train_episodic(resumed, background, checkpoint=tmp_path / "ckpt.pt", **kwargs)
    assert h2.val_acc == h1.val_acc and h2.best_episode == h1.best_episode
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)


def test_checkpoint_of_other_settings_is_refused(background, tmp_path):
    model = _model()
    train_episodic(model, background, 3, 1, 2, n_episodes=5, val_every=5, checkpoint=tmp_path / "c.pt",
                   device="cpu", progress=False)
    with pytest.raises(ValueError, match="delete it or pass another checkpoint path"):
        train_episodic(model, background, 5, 1, 2, n_episodes=5, checkpoint=tmp_path / "c.pt", device="cpu",
                       progress=False)


def test_best_validation_weights_are_kept(background, tiny_eval):
    model = _model()
    h = train_episodic(model, background, 3, 1, 2, n_episodes=20, val_set=tiny_eval, val_every=5, val_episodes=20,
                       device="cpu", progress=False)
    assert h.best_val_acc == max(h.val_acc)
    assert evaluate_model(model, tiny_eval, 3, 1, 2, 20, seed=1, device="cpu")[0] == pytest.approx(h.best_val_acc)


def test_fast_evaluation_equals_episode_by_episode(tiny_eval):
    model = _model().eval()
    fast, fast_ci, _ = evaluate_model(model, tiny_eval, 5, 2, 3, n_episodes=10, seed=4, device="cpu")
    sampler = EpisodeSampler(tiny_eval, 5, 2, 3, n_tasks=10, seed=4)
    slow, slow_ci, _ = evaluate_episodes(model.predict, sampler.episodes(tiny_eval), progress=False)
    assert fast == pytest.approx(slow) and fast_ci == pytest.approx(slow_ci)
