"""Sound for chapter 10: clips the course synthesises (with names it knows), mel spectrograms as images and back.

A clip is a one-second arpeggio (root, third, fifth, octave; a quarter second each) of a major or minor triad,
played in one of a few timbres, synthesised with numpy. Its names (root pitch class, mode, timbre) are kept so
that the course's sound reader (``course_utils.metrics.train_sound_scorer``) can learn to read them back.

``Spectrogram`` turns audio into a mel spectrogram image the way diffusers' deprecated ``Mel`` does (power mel
spectrogram, dB relative to the clip's peak, ``top_db`` mapped to 0-255, low frequencies in the first row) and
back with Griffin-Lim; the course's sizes are much smaller than ``Mel``'s defaults so that a U-Net trains on a CPU.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MODES = ("major", "minor")
TIMBRES = ("sine", "square", "sawtooth", "pluck")
THIRDS = {"major": 4, "minor": 3}  # semitones from the root to the third


@dataclass(frozen=True)
class Spectrogram:
    """Mel spectrogram <-> image settings; the same parameters as diffusers' ``Mel`` (there: 256, 256, 22050,
    2048, 512, 80, 32), at a size a CPU trains on."""

    x_res: int = 32  # frames (image width)
    y_res: int = 32  # mel bins (image height)
    sample_rate: int = 4000
    n_fft: int = 256
    hop_length: int = 128
    top_db: float = 80.0
    n_iter: int = 32  # Griffin-Lim iterations

    @property
    def slice_samples(self) -> int:
        """Samples in one image's worth of audio (``Mel.get_slice_length``... plus one sample, see ``to_image``)."""
        return self.x_res * self.hop_length

    def get_sample_rate(self) -> int:
        """The sample rate (named as ``Mel``'s method, so code written for ``AudioDiffusionPipeline`` runs)."""
        return self.sample_rate

    def to_image(self, audio: np.ndarray) -> Image.Image:
        """A mono clip (padded or cut to ``slice_samples - 1``, as ``Mel`` does) -> an 8-bit grayscale image."""
        import librosa

        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        n = self.slice_samples - 1  # Mel's slice length: x_res * hop - 1 samples give exactly x_res frames
        audio = np.pad(audio[:n], (0, max(0, n - len(audio))))
        power = librosa.feature.melspectrogram(y=audio, sr=self.sample_rate, n_fft=self.n_fft,
                                               hop_length=self.hop_length, n_mels=self.y_res)
        db = librosa.power_to_db(power, ref=np.max, top_db=self.top_db)  # 0 dB at the clip's loudest bin
        pixels = ((db + self.top_db) * 255 / self.top_db).clip(0, 255) + 0.5
        return Image.fromarray(pixels.astype(np.uint8))

    def to_audio(self, image: Image.Image | np.ndarray, seed: int = 0) -> np.ndarray:
        """An 8-bit grayscale spectrogram image -> audio: mel bins back to linear frequencies (non-negative least
        squares), then ``n_iter`` Griffin-Lim iterations from random phases (``seed``: the same clip every time)."""
        import librosa

        pixels = np.asarray(image.convert("L") if isinstance(image, Image.Image) else image)
        if pixels.shape != (self.y_res, self.x_res):
            raise ValueError(f"to_audio takes a {self.y_res}x{self.x_res} spectrogram image (mel bins x frames), "
                             f"got shape {pixels.shape}")
        db = pixels.astype(np.float64) * self.top_db / 255 - self.top_db
        magnitude = librosa.feature.inverse.mel_to_stft(librosa.db_to_power(db), sr=self.sample_rate, n_fft=self.n_fft)
        return librosa.griffinlim(magnitude, n_iter=self.n_iter, hop_length=self.hop_length, n_fft=self.n_fft,
                                  random_state=seed).astype(np.float32)

    def save(self, folder: str | Path) -> None:
        """Write the settings to ``folder/mel_config.json`` (beside a pipeline)."""
        from .files import write_text_atomic

        write_text_atomic(Path(folder) / "mel_config.json", json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> Spectrogram:
        """The settings saved in ``folder/mel_config.json``."""
        return cls(**json.loads((Path(folder) / "mel_config.json").read_text()))


SPECTROGRAM = Spectrogram()  # the course's sizes, used by the data, the metric and the shipped pipeline


# ---- Clips the course synthesises ------------------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    """What a synthesised clip holds: root pitch class (0 = C), mode, timbre and the root's MIDI note."""

    root: int
    mode: str
    timbre: str
    midi: int

    @property
    def name(self) -> str:
        """E.g. ``"A minor arpeggio, pluck"``."""
        return f"{NOTE_NAMES[self.root]} {self.mode} arpeggio, {self.timbre}"


def clip_attributes(index: int, seed: int = 0, modes: Sequence[str] = MODES,
                    timbres: Sequence[str] = TIMBRES) -> Clip:
    """The clip number ``index`` of a family: root, mode and timbre drawn from the index (and ``seed``)."""
    rng = np.random.default_rng([seed, index, 1])
    midi = 60 + int(rng.integers(12))  # roots C4..B4 (262-494 Hz): the arpeggio stays under 1 kHz
    return Clip(root=midi % 12, mode=str(modes[rng.integers(len(modes))]),
                timbre=str(timbres[rng.integers(len(timbres))]), midi=midi)


def tone(frequency: float, seconds: float, timbre: str, sample_rate: int) -> np.ndarray:
    """One note of ``timbre`` (harmonics below Nyquist only, so nothing aliases), with a short fade in and out."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    harmonics = range(1, int(sample_rate / 2 / frequency) + 1)
    if timbre == "sine":
        weights = {1: 1.0}
    elif timbre == "square":  # odd harmonics, 1/n (a clarinet-like hollow sound)
        weights = {n: 1 / n for n in harmonics if n % 2}
    elif timbre in ("sawtooth", "pluck"):  # every harmonic, 1/n (bright, string-like)
        weights = {n: 1 / n for n in harmonics}
    else:
        raise ValueError(f"timbre {timbre!r}: use one of {', '.join(TIMBRES)}")
    wave = sum(w * np.sin(2 * np.pi * n * frequency * t) for n, w in weights.items())
    if timbre == "pluck":  # a plucked string: loud at once, then dying away, higher harmonics sooner
        wave = sum(w * np.exp(-t * (6 + 3 * n)) * np.sin(2 * np.pi * n * frequency * t) for n, w in weights.items())
    fade = np.minimum(1, np.minimum(t, t[::-1]) / 0.01)  # 10 ms ramps: no clicks between notes
    return (wave * fade).astype(np.float32)


def synthesise(clip: Clip, spec: Spectrogram = SPECTROGRAM, seed: int = 0) -> np.ndarray:
    """The clip's audio: four notes (root, third, fifth, octave) filling one spectrogram's worth of samples."""
    rng = np.random.default_rng([seed, clip.midi, len(clip.timbre)])
    note_samples = spec.slice_samples // 4
    audio = np.zeros(spec.slice_samples, dtype=np.float32)
    for i, step in enumerate((0, THIRDS[clip.mode], 7, 12)):
        frequency = 440 * 2 ** ((clip.midi + step - 69) / 12)
        note = tone(frequency, note_samples / spec.sample_rate, clip.timbre, spec.sample_rate)
        audio[i * note_samples: i * note_samples + len(note)] = note * rng.uniform(0.6, 1.0)
    return 0.5 * audio / np.abs(audio).max()


def clip_images(indices: Sequence[int], seed: int = 0, modes: Sequence[str] = MODES,
                timbres: Sequence[str] = TIMBRES, spec: Spectrogram = SPECTROGRAM) -> tuple[torch.Tensor, list[Clip]]:
    """Spectrogram images of clips ``indices`` of a family as (N, 1, y_res, x_res) in [0, 1], and what they hold."""
    clips = [clip_attributes(i, seed, modes, timbres) for i in indices]
    pixels = np.stack([np.asarray(spec.to_image(synthesise(c, spec, seed + i))) for i, c in zip(indices, clips,
                                                                                                  strict=True)])
    return torch.from_numpy(pixels)[:, None].float() / 255, clips


def images_to_tensor(images: Sequence[Image.Image]) -> torch.Tensor:
    """PIL spectrogram images -> (N, 1, H, W) in [0, 1]."""
    return torch.from_numpy(np.stack([np.asarray(im.convert("L")) for im in images]))[:, None].float() / 255


def tensor_to_images(x: torch.Tensor) -> list[Image.Image]:
    """(N, 1, H, W) in [0, 1] -> 8-bit PIL spectrogram images."""
    pixels = (x.detach().float().cpu().clamp(0, 1)[:, 0] * 255).round().byte().numpy()
    return [Image.fromarray(p) for p in pixels]


def write_clip_folder(folder: str | Path, n: int, seed: int = 0, modes: Sequence[str] = MODES,
                      timbres: Sequence[str] = TIMBRES, start: int = 0) -> Path:
    """Write ``n`` spectrogram images of a family as PNGs into ``folder`` (once, atomically): the training
    script's image folder."""
    from .files import atomic_folder

    folder = Path(folder)
    if folder.is_dir():
        return folder
    with atomic_folder(folder) as tmp:
        for block in range(start, start + n, 256):
            x, clips = clip_images(range(block, min(block + 256, start + n)), seed, modes, timbres)
            for i, (image, clip) in enumerate(zip(tensor_to_images(x), clips, strict=True)):
                image.save(tmp / f"clip_{block + i:05d}_{NOTE_NAMES[clip.root].replace('#', 's')}_{clip.mode}"
                                  f"_{clip.timbre}.png")
    return folder


def round_trip_error(audio: np.ndarray, spec: Spectrogram = SPECTROGRAM, loud_db: float = 40.0,
                     back: np.ndarray | None = None) -> dict[str, float]:
    """How much audio -> image -> audio -> image changes a clip's spectrogram, in dB (mean absolute difference):
    over every pixel, and over the loud ones (within ``loud_db`` of the clip's peak), where the notes are.
    ``back`` is the audio heard from the image (default: Griffin-Lim's, ``spec.to_audio``). The phase is lost, so
    the spectrogram is what has to come back."""
    first = spec.to_image(audio)
    back = spec.to_audio(first) if back is None else back
    first, second = (np.asarray(im, dtype=np.float64) for im in (first, spec.to_image(back)))
    error = np.abs(first - second) * spec.top_db / 255
    loud = first >= (spec.top_db - loud_db) * 255 / spec.top_db
    return {"dB, all pixels": float(error.mean()), f"dB, loudest {loud_db:g} dB": float(error[loud].mean())}


# ---- A pipeline called like diffusers' AudioDiffusionPipeline -------------------------------------------------


@dataclass
class AudioOutput:
    """What ``AudioDiffusion`` returns: spectrogram images, their audio (B, 1, samples) and its sample rate."""

    images: list[Image.Image]
    audios: np.ndarray
    sample_rate: int


class AudioDiffusion:
    """A ``UNet2DModel`` and a scheduler that make spectrogram images, and ``Spectrogram`` that hears them.

    Called like diffusers' (deprecated) ``AudioDiffusionPipeline``: ``pipe(batch_size=4, generator=g)`` returns
    ``.images`` and ``.audios``; ``pipe.mel.get_sample_rate()`` (or ``.sample_rate``) says how to play them. The
    folder it saves is a plain ``DDPMPipeline`` plus ``mel_config.json``, so it loads without this class too.
    """

    def __init__(self, unet, scheduler, mel: Spectrogram = SPECTROGRAM):
        self.unet, self.scheduler, self.mel = unet, scheduler, mel

    @property
    def device(self) -> torch.device:
        """Where the U-Net is."""
        return self.unet.device

    def to(self, device: torch.device | str) -> AudioDiffusion:
        """Move the U-Net to ``device``."""
        self.unet.to(device)
        return self

    def get_default_steps(self) -> int:
        """50 for DDIM, 1000 otherwise (as ``AudioDiffusionPipeline``)."""
        return 50 if type(self.scheduler).__name__ == "DDIMScheduler" else 1000

    @torch.no_grad()
    def generate(self, batch_size: int = 1, generator: torch.Generator | None = None,
                 steps: int | None = None) -> torch.Tensor:
        """Spectrogram images (N, 1, y_res, x_res) in [0, 1], from noise by ``steps`` scheduler steps."""
        self.unet.eval()
        self.scheduler.set_timesteps(steps or self.get_default_steps())
        shape = (batch_size, self.unet.config.in_channels, self.mel.y_res, self.mel.x_res)
        x = torch.randn(shape, generator=generator, device=generator.device if generator else "cpu").to(self.device)
        for t in self.scheduler.timesteps:
            x = self.scheduler.step(self.unet(x, t).sample, t, x, generator=generator).prev_sample
        return ((x.clamp(-1, 1) + 1) / 2).cpu()

    def __call__(self, batch_size: int = 1, generator: torch.Generator | None = None, steps: int | None = None,
                 return_dict: bool = True) -> AudioOutput | tuple:
        """Generate ``batch_size`` clips: spectrogram images and their audio (Griffin-Lim)."""
        images = tensor_to_images(self.generate(batch_size, generator, steps))
        audios = np.stack([self.mel.to_audio(im) for im in images])[:, None]
        output = AudioOutput(images, audios, self.mel.get_sample_rate())
        return output if return_dict else (output.images, output.audios)

    @property
    def sample_rate(self) -> int:
        """The sample rate of ``.audios``."""
        return self.mel.get_sample_rate()

    def save_pretrained(self, folder: str | Path) -> None:
        """Save as a ``DDPMPipeline`` (U-Net and scheduler, safetensors) plus ``mel_config.json``."""
        from diffusers import DDPMPipeline

        DDPMPipeline(unet=self.unet, scheduler=self.scheduler).save_pretrained(folder, safe_serialization=True)
        self.mel.save(folder)

    @classmethod
    def from_pretrained(cls, folder: str | Path, dtype: torch.dtype = torch.float32,
                        scheduler: str = "DDIMScheduler") -> AudioDiffusion:
        """Load a saved folder (``scheduler``: the class to sample with, from the saved scheduler's config)."""
        import diffusers

        folder = Path(folder)
        if not (folder / "mel_config.json").is_file():
            raise FileNotFoundError(f"{folder} has no mel_config.json: not an audio pipeline saved by "
                                    "AudioDiffusion.save_pretrained")
        unet = diffusers.UNet2DModel.from_pretrained(folder / "unet", torch_dtype=dtype, use_safetensors=True)
        config = diffusers.DDPMScheduler.load_config(folder / "scheduler")
        return cls(unet, getattr(diffusers, scheduler).from_config(config), Spectrogram.load(folder))


def plot_spectrograms(images: torch.Tensor | Sequence[Image.Image], titles: Sequence[str] | None = None,
                      cols: int = 4, spec: Spectrogram = SPECTROGRAM, size: float = 2.4):
    """Spectrogram images as a grid of plots with time (s) and frequency (Hz, mel scale) axes; the figure."""
    import librosa.display
    import matplotlib.pyplot as plt

    x = images_to_tensor(images) if not isinstance(images, torch.Tensor) else images
    rows = -(-len(x) // cols)
    fig, axes = plt.subplots(rows, min(cols, len(x)), figsize=(size * min(cols, len(x)), size * 0.9 * rows),
                             squeeze=False, sharex=True, sharey=True, layout="constrained")
    for i, ax in enumerate(axes.flat):
        if i >= len(x):
            ax.axis("off")
            continue
        db = x[i, 0].cpu().numpy() * spec.top_db - spec.top_db  # pixel 0-1 -> dB below the clip's peak
        mesh = librosa.display.specshow(db, sr=spec.sample_rate, hop_length=spec.hop_length, n_fft=spec.n_fft,
                                        x_axis="s", y_axis="mel", ax=ax, vmin=-spec.top_db, vmax=0, cmap="magma")
        ax.set_title(titles[i] if titles else "", fontsize=8)
        ax.set_xticks([0, 0.5, 1.0])
        ax.label_outer()
    fig.colorbar(mesh, ax=axes, format="%+.0f dB", shrink=0.8)
    plt.close(fig)  # shown once, where the caller displays or returns it (not again by the inline backend)
    return fig
