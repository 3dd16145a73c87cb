"""Chapter 10's exercises: each reference solution passes its check, a typical slip fails it with the intended
message in both languages, an untouched stub is "not done"."""

import librosa
import numpy as np

from course_utils.exercises import TODO
from course_utils.exercises.chapter10 import (
    _test_frequencies,
    brightest_row,
    check_mel_default_pixels,
    check_note_row,
    check_timbre_rule,
)


def stub(*args):
    raise NotImplementedError(TODO)


CENTRES = librosa.mel_frequencies(n_mels=34, fmax=2000)  # the 32 band centres, between two edges


def note_row(frequency):
    return int(np.argmin(np.abs(CENTRES[1:-1] - frequency)))


def test_note_row_solution_passes_and_a_linear_axis_is_named():
    frequencies = _test_frequencies()
    assert len(frequencies) >= 20 and max(frequencies) > 1500  # the notes, and some of the widening bands
    assert check_note_row(note_row).status == "right"
    verdict = check_note_row(lambda f: round(f / 2000 * 31))
    assert verdict.status == "wrong" and "linear frequency axis" in verdict.en and "线性" in verdict.zh
    verdict = check_note_row(lambda f: int(np.argmin(np.abs(librosa.mel_frequencies(n_mels=32, fmax=2000) - f))))
    assert verdict.status == "wrong" and "brightest in row" in verdict.en and "最亮" in verdict.zh
    assert check_note_row(stub).status == "not done"


def test_brightest_row_rises_with_pitch():
    rows = [brightest_row(f) for f in (262, 523, 1046, 1900)]
    assert rows == sorted(rows) and len(set(rows)) == 4 and rows[-1] == 31


def to_pixels(wave):
    power = librosa.feature.melspectrogram(y=wave, sr=22050, n_fft=2048, hop_length=512, n_mels=256)
    db = librosa.power_to_db(power, ref=np.max, top_db=80)
    return (((db + 80) * 255 / 80).clip(0, 255) + 0.5).astype(np.uint8)


def test_mel_default_pixels_solution_passes_and_truncation_or_default_bands_fail():
    assert check_mel_default_pixels(to_pixels).status == "right"

    def truncated(wave):
        power = librosa.feature.melspectrogram(y=wave, sr=22050, n_fft=2048, hop_length=512, n_mels=256)
        db = librosa.power_to_db(power, ref=np.max, top_db=80)
        return ((db + 80) * 255 / 80).clip(0, 255).astype(np.uint8)

    verdict = check_mel_default_pixels(truncated)
    assert verdict.status == "wrong" and "add 0.5" in verdict.en and "加 0.5" in verdict.zh

    def default_bands(wave):
        power = librosa.feature.melspectrogram(y=wave, sr=22050, n_fft=2048, hop_length=512)
        db = librosa.power_to_db(power, ref=np.max, top_db=80)
        return (((db + 80) * 255 / 80).clip(0, 255) + 0.5).astype(np.uint8)

    verdict = check_mel_default_pixels(default_bands)
    assert verdict.status == "wrong" and "128 bands" in verdict.en and "128 个频带" in verdict.zh

    def absolute_db(wave):
        power = librosa.feature.melspectrogram(y=wave, sr=22050, n_fft=2048, hop_length=512, n_mels=256)
        db = librosa.power_to_db(power, top_db=80)  # against 1, not the clip's peak
        return (((db + 80) * 255 / 80).clip(0, 255) + 0.5).astype(np.uint8)

    verdict = check_mel_default_pixels(absolute_db)
    assert verdict.status == "wrong" and "ref=np.max" in verdict.en and "ref=np.max" in verdict.zh
    assert check_mel_default_pixels(stub).status == "not done"


def timbre_of(image):
    db = image[0].numpy() * 80 - 80  # pixels back to dB: rows are mel bands, columns frames
    note = db[:, 1:7]  # the first note, away from its edges
    r0 = int(note.mean(1).argmax())  # its fundamental: the brightest band
    f0 = CENTRES[1:-1][r0]

    def harmonic(k):  # the k-th harmonic's level, in dB below the fundamental's
        return note[note_row(k * f0)].mean() - note[r0].mean()

    if db[r0, 1] - db[r0, 6] > 5:
        return "pluck"
    if harmonic(2) > -40:
        return "sawtooth"
    if harmonic(3) > -60:
        return "square"
    return "sine"


def test_timbre_rule_solution_passes_and_a_rule_without_pluck_fails():
    assert check_timbre_rule(timbre_of).status == "right"

    def no_pluck(image):
        said = timbre_of(image)
        return "sawtooth" if said == "pluck" else said

    verdict = check_timbre_rule(no_pluck)
    assert verdict.status == "wrong" and "pluck clips only 0%" in verdict.en and "pluck 片段只有 0%" in verdict.zh
    verdict = check_timbre_rule(lambda image: "flute")
    assert verdict.status == "wrong" and "one of sine" in verdict.en
    assert check_timbre_rule(stub).status == "not done"
