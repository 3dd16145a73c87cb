"""Chapter 0's claim about the online/offline decision: one quick connection attempt, never a retry loop."""

from course_utils import data, hub


def test_an_unreachable_hub_is_one_short_attempt_then_offline(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("COURSE_PROFILE", "cpu")  # small would decide offline without trying
    attempts = []

    def times_out(address, timeout=None, **kwargs):
        attempts.append((address, timeout))
        raise TimeoutError("timed out")  # what an unreachable host gives after `timeout` seconds

    monkeypatch.setattr(hub.socket, "create_connection", times_out)
    assert data.use_offline_data("https://hub.example.org")
    assert len(attempts) == 1, f"the check tried {len(attempts)} times: it must be one attempt"
    assert attempts[0][0] == ("hub.example.org", 443) and attempts[0][1] <= 2, attempts[0]
