import socket
import threading
import time

import pytest

from course_utils import data, hub


def test_env_offline_is_honoured_without_touching_the_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("is_offline must not open a connection when HF_HUB_OFFLINE=1")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.is_offline()


def free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def online_switches(monkeypatch):
    """No offline switch set, so the probe decides."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)


@pytest.fixture
def listening():
    """A TCP server on 127.0.0.1 that accepts connections: yields its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                server.accept()[0].close()
            except OSError:
                pass

    accepter = threading.Thread(target=accept, daemon=True)
    accepter.start()
    yield server.getsockname()[1]
    stop.set()
    accepter.join(timeout=2)
    server.close()


def test_closed_port_is_offline_at_once(online_switches):
    start = time.perf_counter()
    assert hub.is_offline(f"http://127.0.0.1:{free_port()}")
    assert time.perf_counter() - start < 1.0


def test_listening_host_is_online(online_switches, listening):
    assert not hub.is_offline(f"http://127.0.0.1:{listening}")


@pytest.mark.parametrize(("url", "address"), [
    ("https://huggingface.co", ("huggingface.co", 443)), ("https://hf-mirror.com/", ("hf-mirror.com", 443)),
    ("http://127.0.0.1:8090", ("127.0.0.1", 8090)), ("http://mirror.example", ("mirror.example", 80)),
    ("hf-mirror.com", ("hf-mirror.com", 443)),
])
def test_endpoint_address_takes_the_port_from_the_url_or_its_scheme(url, address):
    assert hub.endpoint_address(url) == address


def test_a_bad_endpoint_is_named(online_switches, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "ftp://mirror.example")
    with pytest.raises(ValueError, match="ftp://mirror.example.*HF_ENDPOINT"):
        hub.is_offline()


def test_the_probe_asks_hf_endpoint_when_it_is_set(online_switches, listening, monkeypatch):
    asked = []
    real = socket.create_connection
    monkeypatch.setattr(socket, "create_connection", lambda address, **kw: asked.append(address) or real(address, **kw))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listening}/")
    assert hub.hub_endpoint() == f"http://127.0.0.1:{listening}"
    start = time.perf_counter()
    assert not hub.is_offline() and not data.use_offline_data()
    assert time.perf_counter() - start < 2.0
    assert asked and all(a == ("127.0.0.1", listening) for a in asked), "only the mirror was asked"


def test_a_mirror_that_is_down_means_offline_quickly(online_switches, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    start = time.perf_counter()
    assert hub.is_offline() and data.use_offline_data()
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("switch", ["HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"])
def test_offline_mode_wins_over_a_reachable_mirror(online_switches, listening, monkeypatch, switch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listening}")
    monkeypatch.setenv(switch, "1")
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("no connection in offline mode"))
    assert hub.is_offline() and data.use_offline_data()
    monkeypatch.setenv("COURSE_MNIST_MIRROR", f"http://127.0.0.1:{listening}/mnist/")
    assert data.use_offline_data(data.mnist_mirror())


def test_small_profile_asks_a_mirror_but_never_the_public_hosts(online_switches, listening, monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "small")
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("small asked a public host"))
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("COURSE_MNIST_MIRROR", raising=False)
    assert data.use_offline_data() and data.use_offline_data(data.mnist_mirror())
    monkeypatch.undo()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("COURSE_PROFILE", "small")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listening}")
    monkeypatch.setenv("COURSE_MNIST_MIRROR", f"http://127.0.0.1:{listening}/mnist")
    assert data.mnist_mirror() == f"http://127.0.0.1:{listening}/mnist/"
    assert not data.use_offline_data() and not data.use_offline_data(data.mnist_mirror())


def test_unknown_host_fails_fast_with_one_try(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    start = time.perf_counter()
    assert not hub.can_reach("no-such-host.invalid", timeout=2.0)
    assert time.perf_counter() - start < 3.0


def test_every_hub_repository_a_chapter_loads_is_listed_once_with_its_fallback():
    import json
    import re
    from pathlib import Path

    from course_utils import pretrained
    from course_utils.config import SETTINGS
    from course_utils.data import BUTTERFLIES_REPO
    from course_utils.hub import HUB_REPOS

    root = Path(__file__).resolve().parents[1]
    loaded = {BUTTERFLIES_REPO, *pretrained.HUB_COUNTERPARTS.values()}
    loaded |= {v for profiles in SETTINGS.values() for settings in profiles.values() for k, v in settings.items()
               if k.endswith("_model") and isinstance(v, str)}
    call = re.compile(r"(?:from_pretrained|load_dataset|from_hub)\(\s*\"([\w.-]+/[\w.-]+)\"")
    for notebook in sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        loaded |= {m for c in code for m in call.findall(c)}
        loaded |= {m for c in code if "from_hub(" in c for m in re.findall(r"\"([\w.-]+/[\w.-]+)\"", c)}
    assert loaded - HUB_REPOS.keys() == set(), "a chapter loads a Hub id that course_utils.hub.HUB_REPOS lacks"
    assert HUB_REPOS.keys() - loaded == set(), "HUB_REPOS lists an id no chapter loads"
