"""The course's own pretrained pipelines: shipped whole, loaded offline in about a second, and they work."""

import json
import time

import pytest
import torch

from course_tools.pretrained.retraining import retrain
from course_utils import pretrained
from course_utils.metrics import train_digit_scorer

NAMES = list(pretrained.NAMES)
# digits-28-flow at 4 Euler steps: Frechet 61.8 (200 digits) on its card; noise 656 (fewer digits read higher)
FRECHET_4 = 200


@pytest.fixture(scope="module")
def digit_scorer():
    return train_digit_scorer()


@pytest.mark.parametrize("name", NAMES)
def test_each_pipeline_ships_whole_with_fp16_safetensors_and_a_card_from_its_run(name):
    folder = pretrained.path(name)
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    denoiser = pretrained.RECIPES[name].denoiser
    assert {"model_index.json", "scheduler/scheduler_config.json", f"{denoiser}/config.json",
            f"{denoiser}/diffusion_pytorch_model.safetensors", "README.md", "training.json", "scores.json",
            "samples.png"} <= files
    assert not any(f.endswith(".bin") for f in files)
    from safetensors import safe_open

    with safe_open(folder / denoiser / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    record = json.loads((folder / "training.json").read_text())
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: diffusers" in card
    for fact in (record["command"], record["device"], record["date"], f'{record["steps"]:,} optimizer steps'):
        assert fact in card, fact


@pytest.mark.parametrize("name", NAMES)
def test_each_shipped_card_is_what_the_card_templates_make_of_its_record_and_scores(name):
    from course_tools.pretrained.cards import card_text

    folder = pretrained.path(name)
    record, scores = (json.loads((folder / file).read_text()) for file in ("training.json", "scores.json"))
    assert (folder / "README.md").read_text() == card_text(name, record, scores), "rewrite it: --card NAME --in_place"


def test_all_shipped_weights_stay_within_60_mb():
    total = sum(p.stat().st_size for p in pretrained.HERE.rglob("*") if p.is_file())
    assert total <= 60e6, f"course_utils/pretrained holds {total / 1e6:.1f} MB"


@pytest.mark.parametrize("name", NAMES)
def test_load_is_offline_and_fast(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pretrained.load(name)  # the first load imports diffusers' model code
    start = time.perf_counter()
    pipeline = pretrained.load(name)
    assert time.perf_counter() - start < 2.0
    assert getattr(pipeline, pretrained.RECIPES[name].denoiser).dtype == torch.float32 and pipeline.device.type == "cpu"


def test_unknown_name_says_what_ships():
    with pytest.raises(KeyError, match="digits-28, digits-28-conditional, digits-28-flow, digits-28-reflow, "
                                       "digits-28-lcm, butterflies-32"):
        pretrained.load("mnist")


def test_digits_28_draws_digits(digit_scorer):
    x = pretrained.ddim_samples(pretrained.load("digits-28"), 40, steps=10)  # its card: 88 % confident at 8 steps
    scores = digit_scorer.score(x)
    assert scores["confident"] >= 0.6 and scores["classes"] >= 8, scores


def test_the_conditional_model_draws_the_digit_asked_for(digit_scorer):
    labels = torch.arange(10).repeat(4)
    x = pretrained.ddim_samples(pretrained.load("digits-28-conditional"), len(labels), steps=10, labels=labels,
                                guidance_scale=1.0)
    with torch.no_grad():
        asked = (digit_scorer.model(x).argmax(1) == labels).float().mean().item()
    assert asked >= 0.85, asked
    assert pretrained.class_names("digits-28-conditional") == [str(i) for i in range(10)]


def test_retrain_writes_a_loadable_pipeline_and_its_record(tmp_path):
    out = retrain("digits-28-conditional", steps=2, work_dir=tmp_path / "work", out=tmp_path / "out",
                             card=False, extra_args=("--train_batch_size", "16", "--ddpm_num_inference_steps", "2",
                                                     "--eval_batch_size", "1"))
    record = json.loads((out / "training.json").read_text())
    assert record["steps"] == 2 and record["training_images"] == 1438 and len(record["losses"]) == 1
    assert "--class_conditional" in record["script_command"] and str(tmp_path) not in record["script_command"]
    from diffusers import DDPMPipeline
    from safetensors import safe_open

    retrained = DDPMPipeline.from_pretrained(out)
    assert retrained.unet.config.num_class_embeds == 11  # 10 digits + "no class"
    assert retrained.scheduler.config.clip_sample is False  # the recipe's sampling setting (chapter 7)
    with safe_open(out / "unet" / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}


def test_the_command_line_reports_every_bad_input_on_one_line_each(tmp_path, capsys):
    from course_tools.pretrained.__main__ import main

    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    with pytest.raises(SystemExit) as stop:
        main(["--card", "digits-28", "--steps", "0", "--out", str(a_file), "--work_dir", str(a_file)])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines)
    assert any("--steps 0" in line for line in lines) and sum(str(a_file) in line for line in lines) == 3


def test_card_with_retrain_is_refused(tmp_path, capsys):
    from course_tools.pretrained.__main__ import main

    with pytest.raises(SystemExit) as stop:
        main(["--card", "digits-28", "--retrain", "digits-28", "--out", str(tmp_path / "out")])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert any(line.startswith("error: --card digits-28 with --retrain digits-28: give one") for line in lines)


def test_resuming_a_distillation_is_refused_before_anything_runs(tmp_path, capsys):
    from course_tools.pretrained.__main__ import main

    with pytest.raises(SystemExit) as stop:
        main(["--retrain", "digits-28-lcm", "--resume", "--out", str(tmp_path / "out")])
    assert stop.value.code == 2 and not (tmp_path / "out").exists()
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: --resume with --retrain digits-28-lcm: its distillation keeps no checkpoints (one process, minutes); "
        "run it again without --resume"]


@pytest.mark.parametrize("argv", [["--retrain", "digits-28"], ["--card", "butterflies-32"],
                                  ["--retrain", "digits-28", "--out", str(pretrained.path("digits-28"))]])
def test_writing_into_the_shipped_folder_needs_in_place(argv, capsys):
    from course_tools.pretrained.__main__ import main

    folder = pretrained.path(argv[1])
    before = sorted((p.relative_to(folder), p.stat().st_mtime_ns) for p in folder.rglob("*"))
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {argv[0]} {argv[1]} would overwrite the shipped course_utils/pretrained/{argv[1]}; pass "
                   "--out FOLDER to write elsewhere, or --in_place to replace the shipped one"]
    assert sorted((p.relative_to(folder), p.stat().st_mtime_ns) for p in folder.rglob("*")) == before


def test_in_place_goes_with_a_name_and_not_with_another_out(tmp_path, capsys):
    from course_tools.pretrained.__main__ import main

    for argv, expected in ((["--in_place"], "--in_place only means something with --retrain NAME or --card NAME"),
                           (["--retrain", "digits-28", "--in_place", "--out", str(tmp_path)], "drop one of them")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2 and expected in capsys.readouterr().err

def test_digits_28_reflow_draws_digits_in_one_euler_step_where_digits_28_flow_draws_noise(digit_scorer):
    # reflow's point (chapter 12): the same U-Net, trained on its own (noise, sample) pairs, needs one step
    from course_utils.sampling import sample_ddpm

    scores = {}
    for name in ("digits-28-flow", "digits-28-reflow"):
        pipeline = pretrained.load(name)
        scores[name] = digit_scorer.score((sample_ddpm(pipeline.unet, pipeline.scheduler, 60, 1) + 1) / 2)
    # the card: 29.3 against 700 for 200 digits at 1 step; fewer digits read higher
    assert scores["digits-28-reflow"]["frechet"] < 80 < 400 < scores["digits-28-flow"]["frechet"], scores
    assert scores["digits-28-reflow"]["classes"] >= 8, scores


def test_retraining_the_reflow_model_starts_from_the_shipped_flow_and_records_its_pairs(tmp_path):
    out = retrain("digits-28-reflow", steps=2, work_dir=tmp_path / "work", out=tmp_path / "out",
                             card=False, extra_args=("--reflow_pairs", "8", "--reflow_steps", "2", "--train_batch_size",
                                                     "4", "--ddpm_num_inference_steps", "2", "--eval_batch_size", "1"))
    record = json.loads((out / "training.json").read_text())
    assert record["steps"] == 2 and record["training_images"] == 8, record
    assert "--pretrained_model_name_or_path '<digits-28-flow>'" in record["script_command"], record["script_command"]
    assert str(tmp_path) not in record["script_command"] and "--train_data_dir" not in record["script_command"]
    assert not (tmp_path / "work" / "data-digits-28").exists()  # reflow reads no images
    from diffusers import DDPMPipeline, FlowMatchEulerDiscreteScheduler

    assert isinstance(DDPMPipeline.from_pretrained(out).scheduler, FlowMatchEulerDiscreteScheduler)


def test_digits_28_lcm_draws_digits_in_two_steps_of_its_pipeline_where_its_teacher_blurs(digit_scorer):
    # consistency distillation's point (chapter 14): the ordinary pipeline call, 2 steps of its own LCMScheduler
    from diffusers import LCMScheduler

    student, teacher = pretrained.load("digits-28-lcm"), pretrained.load("digits-28")
    assert isinstance(student.scheduler, LCMScheduler)
    images = student(batch_size=60, num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                     output_type="np").images
    scores = digit_scorer.score(torch.from_numpy(images).permute(0, 3, 1, 2))
    blur = digit_scorer.score(pretrained.ddim_samples(teacher, 60, steps=2))
    # the card: Frechet 43.9 (76% confident) at 2 steps against the teacher's 420 with DDIM, 200 digits each
    assert scores["frechet"] < 120 < 250 < blur["frechet"], (scores, blur)
    assert scores["confident"] >= 0.6 and scores["classes"] >= 8, scores


def test_retraining_the_consistency_model_distils_the_shipped_teacher(tmp_path):
    out = retrain("digits-28-lcm", steps=1, out=tmp_path / "out", card=False)
    record = json.loads((out / "training.json").read_text())
    assert record["steps"] == 1 and record["teacher"] == "digits-28" and len(record["losses"]) == 1, record
    assert "course_utils.consistency.distil(<digits-28>.unet" in record["script_command"], record["script_command"]
    assert not [c for c in out.glob("*/config.json") if "_name_or_path" in c.read_text()], "no local path saved"
    from diffusers import DDPMPipeline, LCMScheduler

    scheduler = DDPMPipeline.from_pretrained(out).scheduler
    skip = pretrained.RECIPES["digits-28-lcm"].distil["skip"]
    assert record["distil"]["teacher_steps"] == pretrained.RECIPES["digits-28-lcm"].distil["teacher_steps"]
    assert isinstance(scheduler, LCMScheduler) and scheduler.config.original_inference_steps == 1000 // skip, (
        "the sampler's grid is the one the student was distilled on")


def test_digits_28_flow_is_sampled_by_the_plain_loop_in_4_steps(digit_scorer):
    from diffusers import FlowMatchEulerDiscreteScheduler

    from course_utils.diffusion import flow_sigmas

    pipeline = pretrained.load("digits-28-flow")
    unet, scheduler = pipeline.unet, pipeline.scheduler
    assert isinstance(scheduler, FlowMatchEulerDiscreteScheduler)
    scheduler.set_timesteps(sigmas=flow_sigmas(4))
    x = torch.randn((60, 1, 28, 28), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for t in scheduler.timesteps:  # the U-Net takes the scheduler's timesteps as they are (sigma * 1000)
            x = scheduler.step(unet(x, t).sample, t, x).prev_sample
    scores = digit_scorer.score((x.clamp(-1, 1) + 1) / 2)
    assert scores["frechet"] < FRECHET_4 and scores["classes"] >= 8, scores
    images = pipeline(batch_size=2, num_inference_steps=4, generator=torch.Generator().manual_seed(0)).images
    assert len(images) == 2 and images[0].size == (28, 28)  # the ordinary pipeline samples it too


def test_retrain_of_the_text_to_image_pipeline_writes_fp16_weights_and_the_record_of_its_run(tmp_path):
    tiny = ("--num_images", "16", "--vae_steps", "4", "--max_train_steps", "4", "--vae_batch_size", "4")
    out = retrain("tiny-sd-butterflies", steps=2, work_dir=tmp_path / "work", out=tmp_path / "out",
                             card=False, extra_args=(*tiny, "--checkpointing_steps", "1000"))
    record = json.loads((out / "training.json").read_text())
    assert record["steps"] == 2 and record["vae_steps"] == 4 and record["training_images"] == 16
    assert str(tmp_path) not in record["script_command"] and "<run>" in record["script_command"]
    from safetensors import safe_open

    for part, dtype in (("vae", "F16"), ("unet", "F16"), ("text_encoder", "F32")):  # see retrain_text_to_image
        file = next((out / part).glob("*.safetensors"))
        with safe_open(file, "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {dtype}, part
