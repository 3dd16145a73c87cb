"""Chapter 0's folder of awkward images, end to end: the file-format corner cases the chapter names but does not
show. A transparent PNG, a palette GIF, a 16-bit scan and a JPEG cut short: the check names only the cut file,
skipping keeps the rest, and every kept file loads as 8-bit RGB with the conversion the chapter describes."""

import warnings

import numpy as np
import pytest
from PIL import Image, ImageDraw

from course_utils.data import load_butterflies, synthetic_butterfly, with_preprocessing
from course_utils.imagefolder import BadImagesError, check_image_folder, to_rgb


@pytest.fixture
def awkward_folder(tmp_path):
    synthetic_butterfly(0).save(tmp_path / "plain.png")
    cutout = synthetic_butterfly(1).convert("RGBA")
    alpha = Image.new("L", cutout.size, 0)  # transparent everywhere but a disc in the middle
    ImageDraw.Draw(alpha).ellipse([6, 6, 58, 58], fill=255)
    cutout.putalpha(alpha)
    cutout.save(tmp_path / "transparent.png")
    synthetic_butterfly(2).convert("P").save(tmp_path / "palette.gif")
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "scan16.png")
    synthetic_butterfly(3).save(tmp_path / "cut_short.jpg")
    data = (tmp_path / "cut_short.jpg").read_bytes()
    (tmp_path / "cut_short.jpg").write_bytes(data[: len(data) // 2])  # a download that stopped half-way
    return tmp_path


def test_only_the_cut_short_file_stops_the_check(awkward_folder):
    with pytest.raises(BadImagesError) as info:
        check_image_folder(awkward_folder)
    assert [p.name for p in info.value.bad] == ["cut_short.jpg"]
    assert "cut_short.jpg" in str(info.value) and "skip_bad" in str(info.value)


def test_odd_modes_are_kept_and_become_rgb(awkward_folder):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        good = check_image_folder(awkward_folder, skip_bad=True)
    assert "cut_short.jpg" in str(caught[0].message)
    modes = {p.name: Image.open(p).mode for p in good}
    assert modes == {"palette.gif": "P", "plain.png": "RGB", "scan16.png": "I;16", "transparent.png": "RGBA"}
    converted = {p.name: to_rgb(Image.open(p)) for p in good}
    assert all(im.mode == "RGB" for im in converted.values())
    assert converted["transparent.png"].getpixel((0, 0)) == (255, 255, 255), "transparency goes over white"
    scan = np.asarray(converted["scan16.png"])[..., 0]
    assert scan.min() == 0 and scan.max() == 255 and len(np.unique(scan)) > 200, "16 bits scaled, not clipped"
    palette = Image.open(awkward_folder / "palette.gif").convert("RGB")
    assert np.array_equal(np.asarray(converted["palette.gif"]), np.asarray(palette)), "the palette expanded"


def test_the_loader_skips_what_the_check_skips_and_training_sees_rgb(awkward_folder, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = load_butterflies(data_dir=awkward_folder, skip_bad=True)
    assert len(source.dataset) == 4
    prepared = with_preprocessing(source.dataset, image_size=32)  # chapter 3's preprocessing calls to_rgb
    assert all(prepared[i]["images"].shape == (3, 32, 32) for i in range(4))
