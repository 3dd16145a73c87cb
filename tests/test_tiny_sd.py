"""course_utils.tiny_sd (chapters 8-9): the caption grammar and its tokenizer, the shipped pipeline, inversion of a
drawing through it; and the text-to-image training script."""

import json
import time

import pytest
import torch
from diffusers import DDIMScheduler

from course_utils import metrics, pretrained, runs, tiny_sd, train_checks, train_text_to_image
from course_utils.data import BACKGROUNDS, WING_COLOURS, butterfly_attributes
from course_utils.sampling import ddim_invert, ddim_regenerate


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(tiny_sd.write_tokenizer(tmp_path_factory.mktemp("tokenizer")))


@pytest.fixture(scope="module")
def pipe():
    return pretrained.load("tiny-sd-butterflies")


@pytest.fixture(scope="module")
def reader():
    return metrics.train_butterfly_scorer()


# ---- The caption grammar and its tokenizer -------------------------------------------------------------


def test_the_grammar_names_every_colour_the_drawings_use():
    captions = tiny_sd.all_captions()
    assert len(captions) == len(WING_COLOURS) * len(BACKGROUNDS) + len(WING_COLOURS) + len(BACKGROUNDS) + 1
    assert "an orange butterfly on a grey background" in captions and "a red butterfly" in captions
    assert "a butterfly on a pink background" in captions and "" in captions
    for i in range(50):  # a drawing's own caption is the grammar's full sentence
        a = butterfly_attributes(i)
        assert a.caption == tiny_sd.caption(a.wing, a.background)


def test_every_word_of_the_grammar_is_one_token_and_every_caption_fits(tokenizer):
    vocab = tokenizer.get_vocab()
    for word in tiny_sd.grammar_words():
        assert tokenizer.tokenize(word) == [word + "</w>"], word
    for caption in tiny_sd.all_captions():
        ids = tokenizer(caption, padding="max_length", max_length=tokenizer.model_max_length).input_ids
        assert len(ids) == tokenizer.model_max_length == tiny_sd.MAX_LENGTH
        words = caption.split()
        assert ids[0] == tokenizer.bos_token_id and ids[len(words) + 1] == tokenizer.eos_token_id
        assert ids[1:len(words) + 1] == [vocab[w + "</w>"] for w in words]
        assert tokenizer.decode(ids, skip_special_tokens=True).strip() == caption


def test_a_word_outside_the_grammar_is_spelled_out_not_lost(tokenizer):
    pieces = tokenizer.tokenize("a Turquoise butterfly")
    assert pieces[0] == "a</w>" and pieces[-1] == "butterfly</w>" and len(pieces) > 4  # lowercased, in letters
    assert tokenizer.unk_token_id not in tokenizer("turquoise", add_special_tokens=False).input_ids


def test_the_merges_are_learned_the_same_way_every_time():
    words = tiny_sd.grammar_words()
    assert tiny_sd.learn_merges(words) == tiny_sd.learn_merges(list(reversed(words)))


def test_the_shipped_tokenizer_is_the_one_the_grammar_writes(tokenizer):
    from transformers import CLIPTokenizer

    shipped = CLIPTokenizer.from_pretrained(pretrained.path("tiny-sd-butterflies"), subfolder="tokenizer")
    assert shipped.get_vocab() == tokenizer.get_vocab() and shipped.model_max_length == tokenizer.model_max_length
    for text in [*tiny_sd.all_captions(), "a turquoise butterfly", "pinkish brownish"]:  # same merges, same ids
        assert shipped(text).input_ids == tokenizer(text).input_ids, text


# ---- The shipped pipeline --------------------------------------------------------------------------------


def test_the_shipped_pipeline_loads_offline_with_from_pretrained_and_generates(monkeypatch):
    import huggingface_hub.constants
    from diffusers import StableDiffusionPipeline

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import: patch the constant
    start = time.perf_counter()
    pipeline = StableDiffusionPipeline.from_pretrained(pretrained.path("tiny-sd-butterflies"))
    assert time.perf_counter() - start < 5
    assert pipeline.safety_checker is None and isinstance(pipeline.scheduler, DDIMScheduler)
    pipeline.set_progress_bar_config(disable=True)
    out = pipeline(["a red butterfly", "a blue butterfly"], num_inference_steps=4, output_type="np").images
    assert out.shape == (2, 32, 32, 3) and 0 <= out.min() and out.max() <= 1 and out.std() > 0.05


def test_the_shipped_pipeline_follows_the_wing_colour_in_the_prompt(pipe, reader):
    wings = list(WING_COLOURS) * 2
    x = tiny_sd.generate(pipe, [tiny_sd.caption(w) for w in wings], guidance_scale=5, steps=20)
    hits = sum(map(str.__eq__, reader.wing_colours(x), wings)) / len(wings)
    assert hits >= 0.75, reader.wing_colours(x)


def test_text_predictor_is_classifier_free_guidance_and_scale_one_is_the_prompt_alone(pipe):
    text, empty = tiny_sd.encode_prompts(pipe.tokenizer, pipe.text_encoder, ["a green butterfly", ""])
    x = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        eps_text = pipe.unet(x, 500, encoder_hidden_states=text.expand(3, -1, -1)).sample
        eps_empty = pipe.unet(x, 500, encoder_hidden_states=empty.expand(3, -1, -1)).sample
        guided = tiny_sd.text_predictor(pipe.unet, text[None], empty[None], guidance_scale=4)(x, 500)
        alone = tiny_sd.text_predictor(pipe.unet, text[None], empty[None], guidance_scale=1)(x, 500)
    assert torch.allclose(guided, eps_empty + 4 * (eps_text - eps_empty), atol=1e-5)
    assert torch.allclose(alone, eps_text, atol=1e-6) and not torch.allclose(eps_text, eps_empty, atol=1e-3)


# ---- DDIM inversion --------------------------------------------------------------------------------------


def test_inversion_then_sampling_reconstructs_a_drawing_at_50_steps(pipe):
    """The stated error: 50 DDIM steps up and down give back a held-out drawing within 0.01 mean pixel error of
    the VAE's own round trip (about 0.03, which no inversion can beat); 5 steps err more."""
    drawn, attrs = tiny_sd.held_out_drawings(4, start=400_000)
    latents = tiny_sd.encode_images(pipe.vae, drawn)
    vae_error = (tiny_sd.decode_latents(pipe.vae, latents) - drawn).abs().mean().item()
    text = tiny_sd.encode_prompts(pipe.tokenizer, pipe.text_encoder, [a.caption for a in attrs])
    predict = tiny_sd.text_predictor(pipe.unet, text)
    errors = {}
    for steps in (5, 50):
        back = ddim_regenerate(predict, pipe.scheduler, ddim_invert(predict, pipe.scheduler, latents, steps), steps)
        errors[steps] = (tiny_sd.decode_latents(pipe.vae, back) - drawn).abs().mean().item()
    assert vae_error < 0.05 and errors[50] < vae_error + 0.01 and errors[50] < errors[5], (vae_error, errors)


# ---- The training script ---------------------------------------------------------------------------------

TINY = ["--num_images", "16", "--vae_steps", "4", "--max_train_steps", "4", "--vae_batch_size", "4",
        "--train_batch_size", "4", "--checkpointing_steps", "2", "--lr_warmup_steps", "1"]


def _weights(folder):
    from safetensors.torch import load_file

    return {part: load_file(next((folder / part).glob("*.safetensors"))) for part in ("vae", "unet", "text_encoder")}


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, monkeypatch):
    straight = train_text_to_image.main(["--output_dir", str(tmp_path / "straight"), *TINY])
    # the same run, stopped after the U-Net's first checkpoint (the VAE stage had finished), then resumed
    calls = {"n": 0}
    real_save = runs.save_checkpoint

    def stop_after_unet_checkpoint(accelerator, folder, step, *args, **kwargs):
        out = real_save(accelerator, folder, step, *args, **kwargs)
        calls["n"] += folder.name == "checkpoints-unet"
        if calls["n"]:
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(runs, "save_checkpoint", stop_after_unet_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_text_to_image.main(["--output_dir", str(tmp_path / "resumed"), *TINY])
    assert (tmp_path / "resumed" / "checkpoints-unet" / "checkpoint-2").is_dir()
    assert not (tmp_path / "resumed" / "model_index.json").exists()
    monkeypatch.setattr(runs, "save_checkpoint", real_save)
    resumed = train_text_to_image.main(["--output_dir", str(tmp_path / "resumed"), *TINY,
                                        "--resume_from_checkpoint", "latest"])
    a, b = _weights(straight), _weights(resumed)
    for part in a:
        assert all(torch.equal(a[part][k], b[part][k]) for k in a[part]), part
    log = json.loads((resumed / "training_log.json").read_text())
    assert [step for step, _ in log["losses"]["unet"]] == [1, 4] and not (resumed / "checkpoints-unet").exists()
    assert log["seconds"]["vae"] > 0 and log["seconds"]["unet"] > 0  # time before the interruption is kept


def test_the_script_reports_every_bad_flag_before_doing_anything(tmp_path, capsys):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(SystemExit) as stop:
        train_text_to_image.main(["--output_dir", str(a_file), "--resolution", "30", "--max_train_steps", "0",
                                  "--learning_rate", "3", "--mixed_precision", "fp8", "--lr_scheduler", "cosin"])
    assert stop.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 6 and all(line.startswith("error: ") for line in lines), lines
    for fact in (str(a_file), "--resolution 30", "--max_train_steps 0", "--learning_rate 3", "fp8", "cosin"):
        assert any(fact in line for line in lines), fact
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "something").write_text("x")
    with pytest.raises(SystemExit):
        train_text_to_image.main(["--output_dir", str(occupied)])
    assert "--resume_from_checkpoint latest" in capsys.readouterr().err
    assert [p.name for p in occupied.iterdir()] == ["something"]  # nothing written


def test_a_bad_type_is_reported_with_the_other_problems_one_line_each():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "course_utils.train_text_to_image", "--resolution", "abc",
                           "--max_train_steps", "0"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == ["error: --resolution 'abc': not a whole number",
                                                "error: --max_train_steps 0: must be at least 1 (default: 2500)"]


def test_resuming_is_refused_from_a_checkpoint_of_another_run_or_a_stage_that_is_not_due(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints-unet" / "checkpoint-2").mkdir(parents=True)
    (run / "checkpoints-unet" / "checkpoint-2" / "course_step.json").write_text('{"step": 2}')
    problems = train_checks.text_to_image(train_text_to_image.build_parser(), [
        "--output_dir", str(run), "--resume_from_checkpoint", str(run / "checkpoints-unet" / "checkpoint-2")])[1]
    assert len(problems) == 1 and "vae is missing" in problems[0]  # stage 2 needs the finished VAE
    other = tmp_path / "other"
    other.mkdir()
    problems = train_checks.text_to_image(train_text_to_image.build_parser(), [
        "--output_dir", str(other), "--resume_from_checkpoint", str(run / "checkpoints-unet" / "checkpoint-2")])[1]
    assert len(problems) == 1 and "another run" in problems[0] and str(other) not in problems[0]


def test_vae_steps_zero_keeps_the_vae_untrained_but_measures_its_scaling_factor(tmp_path):
    out = train_text_to_image.main(["--output_dir", str(tmp_path / "run"), *TINY[:2], "--vae_steps", "0",
                                    *TINY[4:]])
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(out / "vae")
    assert vae.config.scaling_factor != 0.18215  # measured, not the default
    drawn, _ = tiny_sd.held_out_drawings(32)
    with torch.no_grad():  # measured as Stable Diffusion's was: on samples of the latent distribution
        z = vae.encode(drawn * 2 - 1).latent_dist.sample() * vae.config.scaling_factor
    assert 0.8 < z.std() < 1.25
    log = json.loads((out / "training_log.json").read_text())
    assert log["losses"]["vae"] == [] and log["seconds"]["unet"] > 0
