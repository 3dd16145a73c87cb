"""Chapter 3's checks: each reference solution passes; a typical wrong answer fails, in both languages."""

import torch
import torch.nn.functional as F
from torchvision import transforms

from course_utils.exercises import TODO
from course_utils.exercises.chapter3 import check_preprocess, check_random_flip, check_sample, check_train_step


def stub(*args):
    raise NotImplementedError(TODO)


def transform_with(*steps):
    """A chapter-3 style transform function built from torchvision steps (images converted to RGB first)."""
    preprocess = transforms.Compose(list(steps))

    def transform(batch):
        return {"images": [preprocess(image.convert("RGB")) for image in batch["image"]]}

    return transform


preprocess = transform_with(transforms.Resize((32, 32)), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
                            transforms.Normalize([0.5], [0.5]))


def random_flip(images, generator):
    mask = torch.rand(len(images), 1, 1, 1, generator=generator) < 0.5
    return torch.where(mask, images.flip(-1), images)


def sample(model, scheduler, n, steps, generator, to01=True, set_steps=True, step_generator=True):
    size = model.config.sample_size
    x = torch.randn((n, 3, size, size), generator=generator)
    if set_steps:
        scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t).sample, t, x, generator=generator if step_generator else None).prev_sample
    return (x / 2 + 0.5).clamp(0, 1) if to01 else x


def test_the_reference_solutions_pass():
    assert check_preprocess(preprocess) and check_random_flip(random_flip)
    assert check_train_step(a_step()) and check_sample(sample)


def test_untouched_stubs_are_not_done():
    for check in (check_preprocess, check_random_flip, check_train_step, check_sample):
        assert check(stub).status == "not done"


def test_a_transform_without_normalize_rgb_key_or_flip_fails():
    verdict = check_preprocess(transform_with(transforms.Resize((32, 32)), transforms.RandomHorizontalFlip(),
                                              transforms.ToTensor()))
    assert not verdict and "Normalize([0.5], [0.5])" in verdict.en and "[-1, 1]" in verdict.zh

    def no_rgb(batch):
        steps = transforms.Compose([transforms.Resize((32, 32)), transforms.ToTensor()])
        return {"images": [steps(image) for image in batch["image"]]}

    verdict = check_preprocess(no_rgb)
    assert not verdict and "RGB" in verdict.en and "3 个通道" in verdict.zh
    verdict = check_preprocess(lambda batch: {"image": preprocess(batch)["images"]})
    assert not verdict and '"images"' in verdict.en and "键" in verdict.zh
    verdict = check_preprocess(transform_with(transforms.Resize((32, 32)), transforms.ToTensor(),
                                              transforms.Normalize([0.5], [0.5])))
    assert not verdict and "mirrored 0 times" in verdict.en and "RandomHorizontalFlip" in verdict.zh


def test_an_upside_down_flip_or_flipping_everything_fails():
    verdict = check_random_flip(lambda images, generator: images.flip(-2))
    assert not verdict and "upside down" in verdict.en and "上下颠倒" in verdict.zh
    verdict = check_random_flip(lambda images, generator: images.flip(-1))
    assert not verdict and "100%" in verdict.en and "一半" in verdict.zh


def a_step(draw=torch.randn, step: bool = True, zero_grad: bool = True):
    """Chapter 3's training step with one thing changed: the noise drawn by ``draw``, or a call left out."""
    def train_step(model, scheduler, optimizer, clean, generator):
        noise = draw(clean.shape, generator=generator)
        t = torch.randint(0, 1000, (len(clean),), generator=generator)
        loss = F.mse_loss(model(scheduler.add_noise(clean, noise, t), t).sample, noise)
        loss.backward()
        if step:
            optimizer.step()
        if zero_grad:
            optimizer.zero_grad()
        return loss.item()

    return train_step


def test_a_step_without_zero_grad_or_optimizer_step_or_with_uniform_noise_fails():
    verdict = check_train_step(a_step(zero_grad=False))
    assert not verdict and "zero_grad" in verdict.en and "清零梯度" in verdict.zh
    verdict = check_train_step(a_step(step=False))
    assert not verdict and "optimizer.step()" in verdict.en and "权重没有变化" in verdict.zh
    verdict = check_train_step(a_step(draw=torch.rand))
    assert not verdict and "Gaussian" in verdict.en and "高斯" in verdict.zh


def test_a_loop_in_minus_one_to_one_without_set_timesteps_or_generator_fails():
    verdict = check_sample(lambda *a: sample(*a, to01=False))
    assert not verdict and "[0, 1]" in verdict.en and "(x / 2 + 0.5)" in verdict.zh
    verdict = check_sample(lambda *a: sample(*a, set_steps=False))
    assert not verdict and "more than 32 times" in verdict.en and "1000 个训练时间步" in verdict.zh
    verdict = check_sample(lambda *a: sample(*a, step_generator=False))
    assert not verdict and "generator" in verdict.en and "新的噪声" in verdict.zh
