import socket
import threading
import time

from course_utils import hub


def test_env_offline_is_honoured_without_touching_the_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("is_offline must not open a connection when HF_HUB_OFFLINE=1")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.is_offline()


def test_closed_port_is_offline_at_once(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    with socket.socket() as s:  # find a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    assert hub.is_offline("127.0.0.1", port)
    assert time.perf_counter() - start < 1.0


def test_listening_host_is_online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    accepter = threading.Thread(target=lambda: server.accept()[0].close(), daemon=True)
    accepter.start()
    try:
        assert not hub.is_offline("127.0.0.1", server.getsockname()[1])
    finally:
        accepter.join(timeout=2)
        server.close()


def test_unknown_host_fails_fast_with_one_try(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.perf_counter()
    assert not hub.can_reach("no-such-host.invalid", timeout=2.0)
    assert time.perf_counter() - start < 3.0
