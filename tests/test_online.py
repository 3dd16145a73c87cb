"""The online path against the test Hub on 127.0.0.1 (tests/hub_server.py): real clients, real HTTP, no internet.

Each check runs in a subprocess with ``online_env`` (HF_ENDPOINT, COURSE_MNIST_MIRROR and HF_TOKEN set, the
offline switches unset, caches in a temporary HF_HOME, proxies pointing at a closed port), because the Hub
clients read HF_ENDPOINT once, when they are imported.
"""

import json
import subprocess
import sys
import textwrap

import hub_server  # tests/ is on sys.path (conftest.py's folder)
import pytest
import torch
from safetensors.torch import load_file


@pytest.fixture(scope="module")
def test_hub():
    with hub_server.serve() as server:
        yield server


@pytest.fixture
def online(test_hub, tmp_path):
    """Run python code or the training script online against the test Hub; return (returncode, output)."""
    env = hub_server.online_env(test_hub, tmp_path)
    env.update(COURSE_PROFILE="small", PYTHONUNBUFFERED="1", TQDM_DISABLE="1")

    def run(*argv: str, code: str | None = None, timeout: float = 240) -> tuple[int, str]:
        cmd = [sys.executable, "-c", textwrap.dedent(code)] if code else [sys.executable, "-m", *argv]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        return done.returncode, done.stdout + done.stderr

    return run


def test_the_loaders_go_online_through_hf_endpoint(online, test_hub):
    rc, out = online(code="""
        import json
        from course_utils import pretrained
        from course_utils.data import load_butterflies, load_mnist
        mnist, butterflies = load_mnist(), load_butterflies()
        longer, which = pretrained.load_longer_trained("butterflies-32")
        print(json.dumps([mnist.description, len(mnist.dataset), butterflies.description,
                          butterflies.dataset[0]["image"].size, which]))
    """)
    assert rc == 0, out
    mnist, n_digits, butterflies, size, which = json.loads(out.strip().splitlines()[-1])
    assert mnist.startswith("MNIST (train, downloaded by torchvision from http://127.0.0.1") and n_digits == 1438
    assert butterflies == f"Hub dataset {hub_server.BUTTERFLIES} ({hub_server.N_BUTTERFLIES} images)"
    assert size == [64, 64]
    assert which.startswith(hub_server.BUTTERFLY_MODEL)
    assert not test_hub.unknown


def test_a_hub_that_is_down_falls_back_to_the_offline_data_and_says_so(online, test_hub, monkeypatch):
    rc, out = online(code="""
        import os, socket
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ["HF_ENDPOINT"] = os.environ["COURSE_MNIST_MIRROR"] = f"http://127.0.0.1:{port}/"
        from course_utils.data import load_butterflies, load_mnist
        print(load_mnist().description, "|", load_butterflies(n_synthetic=8).description)
    """)
    assert rc == 0, out
    assert "offline stand-in for MNIST" in out and "offline stand-in: 8 synthetic butterflies" in out


@pytest.fixture
def deleted(test_hub):
    """Take repositories off the test Hub for one test, as the real Hub deletes or renames them."""
    taken: dict = {}

    def delete(kind: str, repo_id: str) -> None:
        with test_hub.lock:
            taken[(kind, repo_id)] = test_hub.repos.pop((kind, repo_id))

    yield delete
    with test_hub.lock:
        test_hub.repos.update(taken)


def test_a_deleted_hub_repository_is_one_line_and_the_course_s_own_instead(online, deleted):
    deleted("datasets", hub_server.BUTTERFLIES)
    deleted("models", hub_server.BUTTERFLY_MODEL)
    rc, out = online(code="""
        from course_utils import pretrained
        from course_utils.data import load_butterflies
        print(load_butterflies(n_synthetic=8).description)
        print(pretrained.load_longer_trained("butterflies-32")[1])
    """)
    assert rc == 0, out
    lines = out.strip().splitlines()
    assert lines == [
        f"{hub_server.BUTTERFLIES} is not on the Hub any more (deleted or renamed): using the course's drawn "
        "butterflies instead.",
        lines[1],
        f"{hub_server.BUTTERFLY_MODEL} is not on the Hub any more (deleted or renamed): using the shipped "
        "butterflies-32 instead.",
        "butterflies-32 (shipped with the course, trained by its script)",
    ], out  # nothing else: no traceback, no warning, no library's 404 lines
    assert lines[1].startswith("offline stand-in: 8 synthetic butterflies"), out


def test_the_checks_read_a_hub_pipeline_s_unet_and_scheduler_configs_by_id(online, test_hub):
    rc, out = online(code=f"""
        from course_utils import train_checks, train_unconditional
        print(train_checks.unconditional(train_unconditional.build_parser(), [
            "--pretrained_model_name_or_path", {hub_server.BUTTERFLY_MODEL!r}, "--train_data_dir", ".",
            "--resolution", "64", "--ddpm_beta_schedule", "linear", "--output_dir", "unused"])[1])
    """)
    assert rc == 0, out
    found = out.strip().splitlines()[-1]
    # sample_size from unet/config.json, beta_schedule from scheduler/scheduler_config.json, both fetched by id
    assert f"--pretrained_model_name_or_path {hub_server.BUTTERFLY_MODEL} has sample_size 32" in found, out
    assert f"--ddpm_beta_schedule linear but --pretrained_model_name_or_path {hub_server.BUTTERFLY_MODEL} was " \
           "trained with beta_schedule=squaredcos_cap_v2" in found, out
    assert not test_hub.unknown


def test_the_script_checks_the_push_first_then_uploads_and_it_loads_back_by_id(online, test_hub, butterfly_folder,
                                                                              tmp_path):
    images = butterfly_folder(8, 16)
    flags = ["--train_data_dir", str(images), "--resolution", "16", "--train_batch_size", "4", "--ddpm_num_steps",
             "20", "--ddpm_num_inference_steps", "2", "--eval_batch_size", "2", "--lr_warmup_steps", "0",
             "--max_train_steps", "2", "--checkpointing_steps", "1", "--seed", "0", "--push_to_hub"]
    # the up-front checks ask the test Hub (whoami) before any training: a namespace the token cannot write
    rc, out = online("course_utils.train_unconditional", *flags, "--output_dir", str(tmp_path / "refused"),
                     "--hub_model_id", "someone-else/tiny")
    assert rc != 0 and "the token belongs to 'learner', who cannot create repos under 'someone-else'" in out, out
    assert not (tmp_path / "refused").exists(), "nothing trained or written before the check"

    out_dir = tmp_path / "tiny-run"
    rc, out = online("course_utils.train_unconditional", *flags, "--output_dir", str(out_dir))
    assert rc == 0, out
    assert f"uploaded to {test_hub.url}/learner/tiny-run" in out, out  # the default id: <user>/<output folder>
    uploaded = test_hub.repos[("models", "learner/tiny-run")].files
    assert {"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
            "scheduler/scheduler_config.json"} <= set(uploaded)
    assert not any(p.startswith(("checkpoint-", "logs/")) for p in uploaded), sorted(uploaded)

    rc, out = online(code=f"""
        from diffusers import DDPMPipeline
        pipeline = DDPMPipeline.from_pretrained("learner/tiny-run", cache_dir={str(tmp_path / 'cache')!r})
        from safetensors.torch import save_file
        save_file(pipeline.unet.state_dict(), {str(tmp_path / 'loaded.safetensors')!r})
    """)
    assert rc == 0, out
    local = load_file(out_dir / "unet" / "diffusion_pytorch_model.safetensors")
    loaded = load_file(tmp_path / "loaded.safetensors")
    assert local.keys() == loaded.keys() and all(torch.equal(local[k], loaded[k]) for k in local)
    assert not test_hub.unknown


def test_a_wrong_token_is_refused_by_the_hub_before_training(online, test_hub, butterfly_folder, tmp_path):
    images = butterfly_folder(4, 16)
    env_code = f"""
        import os, subprocess, sys
        os.environ["HF_TOKEN"] = "hf_not_the_test_token"
        sys.exit(subprocess.call([sys.executable, "-m", "course_utils.train_unconditional", "--train_data_dir",
                                  {str(images)!r}, "--resolution", "16", "--output_dir", {str(tmp_path / 'out')!r},
                                  "--push_to_hub", "--hub_model_id", "learner/x"]))
    """
    rc, out = online(code=env_code)
    assert rc != 0 and "the Hub refused the token as invalid or expired" in out, out
    assert "hf_not_the_test_token" not in out, "the token is never printed"
    assert not (tmp_path / "out").exists()
