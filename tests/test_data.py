import time

import numpy as np
import pytest
import torch

from course_utils import data


def test_offline_digits_look_like_mnist():
    train, test = data.digits_28("train"), data.digits_28("test")
    x, y = train.tensors
    assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1 and x.max() > 0.9
    assert len(train) + len(test) == 1797
    assert set(y.tolist()) == set(range(10))
    # digits are centred in a 20x20 box like MNIST: the 4-pixel border is empty
    assert x[:, :, :4].abs().sum() == 0 and x[:, :, :, -4:].abs().sum() == 0


def test_digit_splits_are_fixed_and_disjoint():
    a, b = data.digits_28("test").tensors[0], data.digits_28("test").tensors[0]
    assert torch.equal(a, b)
    train = {tuple(v.flatten().tolist()) for v in data.digits_28("train").tensors[0][:, :, 8:20:3, 8:20:3]}
    test = [tuple(v.flatten().tolist()) for v in a[:, :, 8:20:3, 8:20:3]]
    assert sum(t in train for t in test) < len(test) * 0.05  # (a few real digits are near-identical)


def test_bad_split_name():
    with pytest.raises(ValueError, match="split='validation'"):
        data.digits_28("validation")


def test_mnist_offline_falls_back_to_digits_and_says_so(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    source = data.load_mnist(train=False)
    assert time.perf_counter() - start < 10
    assert "offline stand-in for MNIST" in source.description and "test split" in source.description
    image, label = source.dataset[0]
    assert image.shape == (1, 28, 28) and 0 <= int(label) <= 9


def test_small_profile_always_uses_offline_data(monkeypatch):
    monkeypatch.setenv("COURSE_PROFILE", "small")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert data.use_offline_data()


def test_synthetic_butterflies_are_deterministic_and_varied():
    a, b = data.synthetic_butterfly(3), data.synthetic_butterfly(3)
    assert a.size == (64, 64) and a.mode == "RGB"
    assert a.tobytes() == b.tobytes()
    assert data.synthetic_butterfly(4).tobytes() != a.tobytes()
    assert data.synthetic_butterfly(3, seed=1).tobytes() != a.tobytes()


def test_synthetic_folder_is_cached_whole(tmp_path):
    folder = data.synthetic_butterflies_folder(n=6, size=32)
    files = sorted(folder.glob("*.png"))
    assert len(files) == 6
    assert not [p for p in folder.parent.iterdir() if ".tmp-" in p.name]  # no half-written folder left
    mtime = files[0].stat().st_mtime_ns
    assert data.synthetic_butterflies_folder(n=6, size=32) == folder
    assert files[0].stat().st_mtime_ns == mtime  # second call reuses, does not redraw


def test_interrupted_generation_leaves_nothing(monkeypatch):
    draw = data.synthetic_butterfly

    def failing(index, size, seed, night=False):
        if index == 2:
            raise KeyboardInterrupt
        return draw(index, size, seed, night)

    monkeypatch.setattr(data, "synthetic_butterfly", failing)
    with pytest.raises(KeyboardInterrupt):
        data.synthetic_butterflies_folder(n=5, size=16)
    assert list(data.data_dir().iterdir()) == []


def test_offline_butterflies_with_preprocessing(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = data.load_butterflies(n_synthetic=10)
    assert "synthetic butterflies" in source.description and len(source.dataset) == 10
    ds = data.with_preprocessing(source.dataset, image_size=32)
    x = data.first_images(ds, 4)
    assert x.shape == (4, 3, 32, 32)
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.5


def test_local_folder_converts_modes(tmp_path):
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    data.synthetic_butterfly(0).convert("RGBA").save(folder / "a.png")
    data.synthetic_butterfly(1).convert("L").save(folder / "sub" / "b.png")
    (folder / "notes.txt").write_text("not an image")
    source = data.load_butterflies(data_dir=folder)
    assert len(source.dataset) == 2 and str(folder) in source.description
    x = data.first_images(data.with_preprocessing(source.dataset, 16, flip=False), 2)
    assert x.shape == (2, 3, 16, 16)


def test_local_folder_loads_without_progress_bars(tmp_path, monkeypatch, capfd):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")  # a fresh build
    folder = tmp_path / "mine"
    folder.mkdir()
    for i in range(20):
        data.synthetic_butterfly(i, size=16).save(folder / f"b{i:02d}.png")
    capfd.readouterr()
    assert len(data.load_image_folder(folder)) == 20
    err = capfd.readouterr().err
    assert "Generating train split" not in err and "Downloading" not in err, err
    assert not datasets.are_progress_bars_disabled(), "the bars are hidden for the local folder only"


def test_flip_is_random_but_seeded():
    image = data.synthetic_butterfly(0)
    tf = data.butterfly_transform(32)
    torch.manual_seed(0)
    first = [tf(image) for _ in range(8)]
    assert any(not torch.equal(first[0], f) for f in first)  # some flipped, some not
    torch.manual_seed(0)
    assert all(torch.equal(a, tf(image)) for a in first)


def test_first_images_reads_tuples_and_dicts():
    ds = data.digits_28("test")
    assert data.first_images(ds, 3).shape == (3, 1, 28, 28)
    assert data.first_images([{"images": torch.ones(2, 4, 4)}] * 2, 5).shape == (2, 2, 4, 4)


def test_butterfly_attributes_name_what_is_drawn():
    attrs = [data.butterfly_attributes(i) for i in range(400)]
    assert attrs[7] == data.butterfly_attributes(7) and attrs[7] != data.butterfly_attributes(7, seed=1)
    assert {a.wing for a in attrs} == set(data.WING_COLOURS)  # every named colour occurs
    assert {a.background for a in attrs} == set(data.BACKGROUNDS)
    assert all(a.spots != a.wing for a in attrs)
    a = "an" if attrs[0].wing == "orange" else "a"
    assert attrs[0].caption == f"{a} {attrs[0].wing} butterfly on a {attrs[0].background} background"
    # the corner pixel is the named background, within the drawing's jitter
    for i in range(10):
        corner = np.array(data.synthetic_butterfly(i, 32).getpixel((0, 0)))
        assert np.abs(corner - data.BACKGROUNDS[attrs[i].background]).max() <= 12, (i, corner)


def test_decoded_once_equals_the_lazy_preprocessing():
    import numpy as np
    from datasets import Dataset
    from PIL import Image
    from torch.utils.data import DataLoader

    from course_utils.data import DeviceBatches, decode_images, with_preprocessing
    rng = np.random.default_rng(0)  # random pixels: no picture is its own mirror image
    pictures = [Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)) for _ in range(6)]
    lazy = with_preprocessing(Dataset.from_dict({"image": pictures}), image_size=16, flip=False)
    plain = torch.cat([b["images"] for b in DataLoader(lazy, batch_size=4)])
    fast = torch.cat(list(DeviceBatches(decode_images(pictures, 16), 4, "cpu", flip=False, shuffle=False)))
    assert fast.shape == plain.shape == (6, 3, 16, 16)
    assert torch.allclose(fast, plain, atol=1e-6)
    flipped = torch.cat(list(DeviceBatches(decode_images(pictures, 16), 6, "cpu", flip=True, shuffle=False, seed=1)))
    mirrored = [torch.equal(f, p.flip(-1)) for f, p in zip(flipped, plain, strict=True)]
    assert all(m or torch.equal(f, p) for m, f, p in zip(mirrored, flipped, plain, strict=True))
    assert any(mirrored) and not all(mirrored)  # seed 1 flips some of the six, not all


def test_unpack_reads_every_form_a_batch_takes():
    from course_utils.data import unpack

    x, y, z = torch.zeros(2, 1, 4, 4), torch.tensor([1, 2]), torch.ones(2, 1, 4, 4)
    assert [v is w for v, w in zip(unpack(x), (x, None, None), strict=True)] == [True, True, True]
    images, labels, noise = unpack((x, y))  # a TensorDataset's pair
    assert images is x and labels is y and noise is None
    images, labels, noise = unpack({"images": x, "labels": [1, 2], "noise": z})  # the script's, DeviceBatches'
    assert images is x and torch.equal(labels, y) and noise is z
