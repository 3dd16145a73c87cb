import pytest
import torch

from course_utils import config


def test_default_profile_follows_cuda(monkeypatch):
    monkeypatch.delenv("COURSE_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert config.get_profile() == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert config.get_profile() == "full"


def test_profile_from_environment_is_case_insensitive(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", " Small ")
    assert config.get_profile() == "small"


def test_unknown_profile_names_the_value_and_the_choices(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "gpu")
    with pytest.raises(ValueError, match=r"COURSE_PROFILE='gpu'.*small, cpu, full"):
        config.get_profile()


def test_chapter_config_reads_the_profile_settings(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "small")
    cfg = config.chapter_config("ch0")
    assert cfg.profile == "small"
    assert cfg.n_butterflies == config.SETTINGS["ch0"]["small"]["n_butterflies"]
    assert isinstance(cfg.device, torch.device)
    assert config.chapter_config("ch0", "full").n_butterflies == 1000


def test_every_chapter_defines_every_profile_with_the_same_keys():
    for chapter, by_profile in config.SETTINGS.items():
        assert set(by_profile) == set(config.PROFILES), chapter
        keys = {p: set(v) for p, v in by_profile.items()}
        assert len({frozenset(k) for k in keys.values()}) == 1, f"{chapter}: profiles differ in keys {keys}"


def test_unknown_chapter_is_a_clear_error():
    with pytest.raises(KeyError, match="no settings for chapter 'ch99'"):
        config.chapter_config("ch99")


def test_device_override(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert config.get_device() == torch.device("cpu")


def test_seed_everything_makes_runs_repeat():
    g1 = config.seed_everything(7)
    a, b = torch.randn(5), torch.randn(5, generator=g1)
    g2 = config.seed_everything(7)
    assert torch.equal(a, torch.randn(5)) and torch.equal(b, torch.randn(5, generator=g2))
