import pytest
import torch

from mlcourse.device import get_device, seed_everything


def test_default_is_cuda_when_available(monkeypatch):
    monkeypatch.delenv("MLCOURSE_DEVICE", raising=False)
    assert get_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_environment_and_explicit_choice(monkeypatch):
    monkeypatch.setenv("MLCOURSE_DEVICE", "cpu")
    assert get_device() == torch.device("cpu")
    assert get_device("cpu") == torch.device("cpu")


def test_cuda_without_gpu_is_explained(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="torch.cuda.is_available\\(\\) is False"):
        get_device("cuda")


def test_unknown_device_is_explained():
    with pytest.raises(ValueError, match="unknown device"):
        get_device("tpu9")


def test_seed_everything_repeats_draws():
    seed_everything(3)
    a = torch.rand(3)
    seed_everything(3)
    assert torch.equal(a, torch.rand(3))
    with pytest.raises(TypeError):
        seed_everything(1.5)
