"""Chapter 4's sharing helpers: the model card, the dry-run file list, the token rules, atomic saves."""

import socket

import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler
from huggingface_hub import ModelCard
from torch.utils.data import DataLoader

from course_utils import hub
from course_utils.data import load_butterflies, with_preprocessing
from course_utils.diffusion import make_unet, train_ddpm
from course_utils.files import atomic_folder, folder_tree, human_size, save_pipeline


def tiny_butterfly_pipeline(folder, n_images: int, epochs: int, seed: int = 0):
    """A tiny 32-px pipeline trained for seconds on drawn butterflies (it samples blobs), saved to ``folder``."""
    torch.manual_seed(seed)
    dataset = with_preprocessing(load_butterflies(n_synthetic=n_images, offline=True).dataset, 32)
    loader = DataLoader(dataset, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(seed))
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    unet = make_unet(32, channels=(16, 32), layers_per_block=1, attention=0)
    train_ddpm(unet, scheduler, loader, epochs, lr=1e-3, generator=torch.Generator().manual_seed(seed))
    return save_pipeline(DDPMPipeline(unet=unet.eval(), scheduler=scheduler), folder)


@pytest.fixture(scope="module")
def saved_pipeline(tmp_path_factory):
    """A tiny trained pipeline saved to disk once for this module (about two seconds)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COURSE_DATA_DIR", str(tmp_path_factory.mktemp("data")))
        return tiny_butterfly_pipeline(tmp_path_factory.mktemp("pipe") / "tiny", n_images=16, epochs=1)


def test_card_has_the_metadata_the_hub_reads(tmp_path):
    dataset = "huggan/smithsonian_butterflies_subset"
    card = hub.pipeline_card("someone/ddpm-test", "A test pipeline.", datasets=[dataset])
    card.save(tmp_path / "README.md")
    parsed = ModelCard.load(tmp_path / "README.md")  # a local file: no network
    assert parsed.data.license == "mit"
    assert parsed.data.library_name == "diffusers"
    assert "unconditional-image-generation" in parsed.data.tags
    assert parsed.data.datasets == [dataset]
    assert 'DDPMPipeline.from_pretrained("someone/ddpm-test")' in parsed.text
    assert "A test pipeline." in parsed.text


def test_saved_pipeline_is_safetensors_and_loads_back(saved_pipeline):
    files = {p.relative_to(saved_pipeline).as_posix() for p in saved_pipeline.rglob("*") if p.is_file()}
    assert {"model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
            "scheduler/scheduler_config.json"} <= files
    assert not [f for f in files if f.endswith(".bin")]
    pipe = DDPMPipeline.from_pretrained(saved_pipeline, use_safetensors=True)
    seeded = [torch.Generator().manual_seed(0) for _ in range(2)]
    out = [pipe(batch_size=2, num_inference_steps=3, generator=g, output_type="np").images for g in seeded]
    assert out[0].shape == (2, 32, 32, 3) and (out[0] == out[1]).all()
    assert "diffusion_pytorch_model.safetensors" in folder_tree(saved_pipeline)


def test_dry_run_lists_pipeline_files_but_never_training_state(saved_pipeline, tmp_path):
    import shutil

    folder = tmp_path / "pipe"
    shutil.copytree(saved_pipeline, folder)
    for junk in ("checkpoint-500/optimizer.bin", "checkpoint-500/model.safetensors", "logs/events.out.tfevents.1",
                 ".DS_Store", "unet/.partial.tmp-1"):
        (folder / junk).parent.mkdir(parents=True, exist_ok=True)
        (folder / junk).write_text("x")
    plan = hub.upload_plan(folder)
    assert plan == sorted(["model_index.json", "scheduler/scheduler_config.json", "unet/config.json",
                           "unet/diffusion_pytorch_model.safetensors"])


def test_dry_run_of_a_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        hub.upload_plan(tmp_path / "nowhere")


def test_upload_is_refused_without_a_token_before_any_network(saved_pipeline, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("no connection may be opened without a token")

    monkeypatch.setattr(socket, "create_connection", no_network)
    for token in (None, ""):
        with pytest.raises(PermissionError, match="HF_TOKEN"):
            hub.upload_pipeline(saved_pipeline, "someone/ddpm-test", token)


def test_upload_refuses_a_folder_that_is_not_a_pipeline(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        hub.upload_pipeline(tmp_path, "someone/ddpm-test", "hf_not_a_real_token")


def test_token_comes_from_the_environment_only(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert hub.find_token() is None
    monkeypatch.setenv("HF_TOKEN", "  hf_example  ")
    assert hub.find_token() == "hf_example"


def test_atomic_folder_keeps_the_old_one_when_the_write_fails(tmp_path):
    target = tmp_path / "out"
    with atomic_folder(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_folder(target, replace=True) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("crash mid-save")
    assert (target / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left behind
    with atomic_folder(target, replace=True) as tmp:
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]


def test_a_saved_pipeline_carries_no_local_path(saved_pipeline, tmp_path):
    """diffusers writes the folder a pipeline was loaded from into its configs; the course's saves drop it (it
    would be uploaded to the Hub with the user's name in it), and the shipped pipelines carry none."""
    from course_utils import pretrained

    loaded = DDPMPipeline.from_pretrained(saved_pipeline, use_safetensors=True)
    again = save_pipeline(loaded, tmp_path / "again")
    shipped = [pretrained.path(name) for name in pretrained.NAMES]
    configs = [c for folder in [again, *shipped] for c in [folder / "model_index.json", *folder.glob("*/config.json")]]
    assert len(configs) > 2 * len(shipped)
    assert not [str(c) for c in configs if "_name_or_path" in c.read_text()]


def test_save_pipeline_failure_leaves_no_folder(tmp_path):
    class Broken:
        def save_pretrained(self, folder, safe_serialization=True):
            (folder / "model_index.json").write_text("{}")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_pipeline(Broken(), tmp_path / "pipe")
    assert list(tmp_path.iterdir()) == []


def test_human_size():
    assert [human_size(n) for n in (12, 1_234, 5_600_000)] == ["12 B", "1.2 kB", "5.6 MB"]
