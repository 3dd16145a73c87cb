"""Chapter 10's exercises: which image row a pitch lights up, ``Mel``'s default image step, the timbre read by hand.

Each check measures the learner's answer against what the course's sound actually does: the brightest row of a
synthesised tone's spectrogram, diffusers' ``Mel.audio_slice_to_image``, the timbre every synthesised clip was made
with.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from . import Verdict, checked, right, wrong

# Mel's defaults (x_res, y_res, sample_rate, n_fft, hop_length, top_db, n_iter): about six seconds in 256 x 256
MEL_DEFAULTS = (256, 256, 22050, 2048, 512, 80, 32)


def brightest_row(frequency: float) -> int:
    """The row of the course's spectrogram image in which a pure tone at ``frequency`` Hz is brightest."""
    from ..audio import SPECTROGRAM as spec

    t = np.arange(spec.slice_samples) / spec.sample_rate
    image = np.asarray(spec.to_image(0.5 * np.sin(2 * np.pi * frequency * t))).astype(float)
    return int(image[:, 8:24].mean(1).argmax())  # away from the fade at the ends


def _test_frequencies() -> list[float]:
    """The course's notes (C4 to B5) and a few harmonics above 1 kHz, where the mel bands widen; tones that sit
    on the border of two bands (within a tenth of a band of it) are left out, since either row is right there."""
    import librosa

    from ..audio import SPECTROGRAM as spec

    centres = librosa.mel_frequencies(n_mels=spec.y_res + 2, fmax=spec.sample_rate / 2)
    borders = (centres[1:] + centres[:-1]) / 2
    widths = np.diff(centres)
    chosen = []
    for f in [440 * 2 ** ((m - 69) / 12) for m in range(60, 84)] + [1100.0, 1300.0, 1500.0, 1700.0, 1900.0]:
        i = int(np.argmin(np.abs(borders - f)))
        if abs(borders[i] - f) > 0.1 * widths[i]:
            chosen.append(f)
    return chosen


@checked
def check_note_row(note_row: Callable) -> Verdict:
    """Exercise 1: ``note_row(frequency)`` is the row (0 = lowest band) of the course's 32 x 32 image where a pure
    tone at that frequency is brightest; checked on synthesised tones from 262 Hz to 1.9 kHz."""
    frequencies = _test_frequencies()
    for f in frequencies:
        want, got = brightest_row(f), int(note_row(f))
        if got != want:
            linear = round(f / 2000 * 31)
            hint = (" — that is a linear frequency axis; the rows are mel bands, narrow and evenly spaced below "
                    "1 kHz and widening above it" if got == linear else "")
            hint_zh = "——这是线性的频率轴；每一行是一个梅尔频带：1 kHz 以下窄而均匀，以上逐渐变宽" if hint else ""
            return wrong(f"a {f:.0f} Hz tone is brightest in row {want}, your note_row gives {got}{hint}",
                         f"{f:.0f} Hz 的纯音在第 {want} 行最亮，你的 note_row 给出 {got}{hint_zh}")
    return right(f"note_row finds the brightest row of all {len(frequencies)} test tones, from "
                 f"{frequencies[0]:.0f} Hz to {frequencies[-1]:.0f} Hz: each row is one mel band",
                 f"在全部 {len(frequencies)} 个测试纯音（{frequencies[0]:.0f} Hz 到 {frequencies[-1]:.0f} Hz）上，"
                 "note_row 都找到了最亮的行：每一行就是一个梅尔频带")


@checked
def check_mel_default_pixels(to_pixels: Callable) -> Verdict:
    """Exercise 2: ``to_pixels(wave)`` is ``Mel().audio_slice_to_image`` (diffusers' defaults) as a uint8 array;
    where diffusers no longer has ``Mel``, the course's ``Spectrogram`` with the same settings stands in."""
    from ..audio import Spectrogram, clip_attributes, synthesise

    spec = Spectrogram(*MEL_DEFAULTS)
    wave = synthesise(clip_attributes(5), spec, seed=5)[: spec.slice_samples - 1]
    try:
        from diffusers import Mel

        mel = Mel()
        mel.load_audio(raw_audio=wave)
        want, judge = np.asarray(mel.audio_slice_to_image(0)).astype(int), "diffusers' Mel"
    except ImportError:  # a diffusers without Mel: the chapter shows the two are the same
        want, judge = np.asarray(spec.to_image(wave)).astype(int), "the course's Spectrogram with Mel's defaults"
    got = np.asarray(to_pixels(wave.copy()))
    if got.shape != want.shape:
        hint = (" — librosa's melspectrogram makes 128 bands unless n_mels says otherwise" if got.shape[:1] == (128,)
                else "")
        hint_zh = "——librosa 的 melspectrogram 默认 128 个频带，需要用 n_mels 指定" if hint else ""
        return wrong(f"the image has shape {got.shape}, {judge} makes {want.shape} (mel bands x frames){hint}",
                     f"图像形状是 {got.shape}，{judge} 得到 {want.shape}（梅尔频带 x 帧）{hint_zh}")
    diff = np.abs(got.astype(int) - want)
    if (diff > 0).mean() > 0.001:
        if diff.max() == 1:
            return wrong(f"{(diff > 0).mean():.1%} of the pixels are one grey level off {judge}: round to the "
                         "nearest byte (add 0.5 before the cast), do not cut the fraction off",
                         f"{(diff > 0).mean():.1%} 的像素与 {judge} 差一个灰度级：应四舍五入到最近的字节"
                         "（转换类型前加 0.5），而不是直接截掉小数")
        return wrong(f"the largest pixel difference from {judge} is {diff.max()} grey levels: dB relative to the "
                     "clip's loudest band (ref=np.max), floored at -top_db, then -80..0 dB to 0..255",
                     f"与 {judge} 的最大像素差为 {diff.max()} 个灰度级：分贝应相对于片段最响的频带（ref=np.max），"
                     "下限为 -top_db，再把 -80..0 dB 映射到 0..255")
    return right(f"your {want.shape[0]} x {want.shape[1]} image equals {judge}'s, pixel for pixel",
                 f"你的 {want.shape[0]} x {want.shape[1]} 图像与 {judge} 的逐像素相同")


def _timbre_clips(n: int = 64) -> tuple[torch.Tensor, list[str]]:
    """``n`` synthesised clips of both modes and every timbre, not among the reader's or the chapter's."""
    from ..audio import clip_images

    images, clips = clip_images(range(500_000, 500_000 + n), seed=11)
    return images, [c.timbre for c in clips]


@checked
def check_timbre_rule(timbre_of: Callable, at_least: float = 0.9) -> Verdict:
    """Exercise 3: ``timbre_of(image)`` (one (1, 32, 32) spectrogram in [0, 1]) names the timbre of at least
    ``at_least`` of 64 synthesised clips, 16 or so of each."""
    from ..audio import TIMBRES

    images, truth = _timbre_clips()
    said = [timbre_of(image.clone()) for image in images]
    unknown = sorted({s for s in said if s not in TIMBRES}, key=str)
    if unknown:
        return wrong(f"timbre_of returned {unknown[:3]}; it should return one of {', '.join(TIMBRES)}",
                     f"timbre_of 返回了 {unknown[:3]}；应返回 {', '.join(TIMBRES)} 之一")
    share = np.mean([s == t for s, t in zip(said, truth, strict=True)])
    per = {t: np.mean([s == t for s, tt in zip(said, truth, strict=True) if tt == t]) for t in TIMBRES}
    if share < at_least:
        worst = min(per, key=per.get)
        return wrong(f"your rule names {share:.0%} of the clips right; {worst} clips only {per[worst]:.0%} "
                     f"(aim: {at_least:.0%} in all). Per timbre: "
                     + ", ".join(f"{t} {v:.0%}" for t, v in per.items()),
                     f"你的规则认对了 {share:.0%} 的片段；{worst} 片段只有 {per[worst]:.0%}"
                     f"（目标：总体 {at_least:.0%}）。各音色："
                     + "，".join(f"{t} {v:.0%}" for t, v in per.items()))
    return right(f"your rule names {share:.0%} of the clips right (" + ", ".join(f"{t} {v:.0%}" for t, v in
                                                                                per.items()) + ")",
                 f"你的规则认对了 {share:.0%} 的片段（" + "，".join(f"{t} {v:.0%}" for t, v in per.items()) + "）")
