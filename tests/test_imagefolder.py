import warnings

import numpy as np
import pytest
from PIL import Image

from course_utils.imagefolder import BadImagesError, check_image_folder, to_rgb


@pytest.fixture
def messy_folder(tmp_path):
    rng = np.random.default_rng(0)
    good = Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
    good.save(tmp_path / "good.png")
    good.save(tmp_path / "cut.jpg", quality=95)
    raw = (tmp_path / "cut.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "fake.png").write_text("this is not a png")
    (tmp_path / "empty.webp").write_bytes(b"")
    (tmp_path / "readme.md").write_text("ignored: not an image extension")
    return tmp_path


def test_every_bad_file_is_named_in_one_error(messy_folder):
    with pytest.raises(BadImagesError) as info:
        check_image_folder(messy_folder)
    message = str(info.value)
    for name in ("cut.jpg", "fake.png", "empty.webp"):
        assert name in message
    assert "good.png" not in message and "readme.md" not in message
    assert "3 of 4 files" in message and "skip_bad" in message and str(messy_folder) in message
    assert sorted(p.name for p in info.value.bad) == ["cut.jpg", "empty.webp", "fake.png"]


def test_skipping_warns_with_the_names_and_keeps_the_good(messy_folder):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = check_image_folder(messy_folder, skip_bad=True)
    assert [p.name for p in files] == ["good.png"]
    text = " ".join(str(w.message) for w in caught)
    assert "cut.jpg" in text and "fake.png" in text and "empty.webp" in text


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_image_folder(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="no image files"):
        check_image_folder(tmp_path)


def test_to_rgb_alpha_goes_over_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("RGBA", (4, 4), (255, 0, 0, 255))).getpixel((0, 0)) == (255, 0, 0)


def test_to_rgb_sixteen_bit_is_scaled_not_clipped():
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)
    out = to_rgb(Image.fromarray(values))
    assert [out.getpixel((i, 0)) for i in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_to_rgb_palette_and_gray():
    pal = Image.new("RGB", (4, 4), (10, 200, 30)).convert("P")
    assert to_rgb(pal).mode == "RGB" and to_rgb(pal).getpixel((0, 0)) == pal.convert("RGB").getpixel((0, 0))
    assert to_rgb(Image.new("L", (2, 2), 77)).getpixel((1, 1)) == (77, 77, 77)
