"""course_utils.audio (chapter 10): synthesised clips, spectrogram <-> image <-> audio, the shipped audio pipeline."""

import numpy as np
import pytest
import torch

from course_utils import audio, pretrained
from course_utils.metrics import train_sound_scorer

SPEC = audio.SPECTROGRAM


@pytest.fixture(scope="module")
def reader():
    return train_sound_scorer()


def test_a_clip_fills_one_spectrogram_and_its_image_has_the_stated_size():
    clip = audio.clip_attributes(5)
    wave = audio.synthesise(clip)
    assert wave.shape == (SPEC.slice_samples,) and 0.4 < np.abs(wave).max() <= 0.5
    image = SPEC.to_image(wave)
    assert image.size == (SPEC.x_res, SPEC.y_res) and image.mode == "L"
    assert clip.name.endswith(f"arpeggio, {clip.timbre}") and clip.mode in audio.MODES


def test_spectrogram_is_diffusers_mel_while_mel_exists():
    from dataclasses import asdict

    try:
        from diffusers import Mel
    except ImportError:
        pytest.skip("diffusers no longer exports the deprecated Mel")
    wave = audio.synthesise(audio.clip_attributes(2))
    mel = Mel(**asdict(SPEC))
    mel.load_audio(raw_audio=wave)
    diff = np.abs(np.asarray(mel.audio_slice_to_image(0)).astype(int) - np.asarray(SPEC.to_image(wave)).astype(int))
    assert diff.max() <= 1


def test_round_trip_brings_the_notes_back_within_the_stated_error():
    # stated in chapter 10: the loud pixels (within 40 dB of the peak) come back within about 5 dB on average;
    # the silence between notes fills with smear (about 22 dB on average over all pixels)
    errors = [audio.round_trip_error(audio.synthesise(audio.clip_attributes(i), seed=i)) for i in range(12)]
    loud = np.mean([e["dB, loudest 40 dB"] for e in errors])
    every = np.mean([e["dB, all pixels"] for e in errors])
    assert loud < 7.0, loud
    assert every < 27.0, every


def test_griffin_lim_is_repeatable_and_rejects_a_wrong_size():
    image = SPEC.to_image(audio.synthesise(audio.clip_attributes(1)))
    a, b = SPEC.to_audio(image), SPEC.to_audio(image)
    assert np.array_equal(a, b) and a.dtype == np.float32 and len(a) == (SPEC.x_res - 1) * SPEC.hop_length
    with pytest.raises(ValueError, match="32x32 spectrogram image"):
        SPEC.to_audio(np.zeros((64, 64), dtype=np.uint8))


def test_clip_folder_is_written_once_with_names_in_the_file_names(tmp_path):
    folder = audio.write_clip_folder(tmp_path / "clips", 6, modes=("minor",))
    files = sorted(p.name for p in folder.glob("*.png"))
    assert len(files) == 6 and all("_minor_" in f for f in files)
    assert audio.write_clip_folder(folder, 99) == folder and len(list(folder.glob("*.png"))) == 6


def test_the_shipped_audio_pipeline_is_called_like_audio_diffusion_pipeline_and_beats_noise(reader):
    from diffusers import DDIMScheduler

    pipe = pretrained.load("audio-arpeggios-32")
    out = pipe(generator=torch.Generator().manual_seed(0))  # its defaults: one clip, DDPM over every timestep
    assert out.audios.shape == (1, 1, (SPEC.x_res - 1) * SPEC.hop_length) and out.sample_rate == 4000
    assert pipe.mel.get_sample_rate() == 4000 and out.images[0].size == (SPEC.x_res, SPEC.y_res)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # the card's sampler: DDIM, 50 steps
    out = pipe(batch_size=24, generator=torch.Generator().manual_seed(0), steps=50)
    x = audio.images_to_tensor(out.images)
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    s, n = reader.score(x), reader.score(noise)
    assert s["frechet"] * 3 < n["frechet"], (s, n)
    assert s["confident"] >= 0.5 and s["tonal"] >= 0.5, s
    assert s["read as minor"] <= 0.25, s  # it was trained on major arpeggios only


def test_an_audio_pipeline_saves_as_a_ddpm_pipeline_plus_its_mel_settings(tmp_path):
    from diffusers import DDPMPipeline

    pipe = pretrained.load("audio-arpeggios-32")
    pipe.save_pretrained(tmp_path / "saved")
    again = audio.AudioDiffusion.from_pretrained(tmp_path / "saved")
    assert again.mel == pipe.mel
    assert torch.equal(again.unet.conv_in.weight, pipe.unet.conv_in.weight)
    assert DDPMPipeline.from_pretrained(tmp_path / "saved").unet.config.in_channels == 1
    with pytest.raises(FileNotFoundError, match="mel_config.json"):
        audio.AudioDiffusion.from_pretrained(pretrained.path("digits-28"))
