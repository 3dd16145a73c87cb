"""Chapter 6's exercises: each reference solution passes its check; a typical slip fails it, in both languages."""

import copy

import torch

from course_utils import pretrained
from course_utils.exercises import TODO
from course_utils.exercises import chapter6 as ex6
from course_utils.lora import LORA_TARGETS, add_lora


def ddim_step(model_output, x, abar_t, abar_next, prediction_type):
    if prediction_type == "epsilon":
        eps = model_output
        x0 = (x - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
    else:
        x0 = abar_t.sqrt() * x - (1 - abar_t).sqrt() * model_output
        eps = abar_t.sqrt() * model_output + (1 - abar_t).sqrt() * x
    return abar_next.sqrt() * x0 + (1 - abar_next).sqrt() * eps


def ddim_step_eps_only(model_output, x, abar_t, abar_next, prediction_type):
    """The typical slip: reading every model output as noise."""
    return ddim_step(model_output, x, abar_t, abar_next, "epsilon")


def ddim_step_eta(eps, x, abar_t, abar_next, eta, noise):
    x0 = (x - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
    sigma = eta * ((1 - abar_next) / (1 - abar_t)).sqrt() * (1 - abar_t / abar_next).sqrt()
    return abar_next.sqrt() * x0 + (1 - abar_next - sigma**2).sqrt() * eps + sigma * noise


def ddim_step_eta_unshrunk(eps, x, abar_t, abar_next, eta, noise):
    """The typical slip: adding the fresh noise without taking it out of the ε̂ term."""
    x0 = (x - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
    sigma = eta * ((1 - abar_next) / (1 - abar_t)).sqrt() * (1 - abar_t / abar_next).sqrt()
    return abar_next.sqrt() * x0 + (1 - abar_next).sqrt() * eps + sigma * noise


def relative_change(base, tuned):
    changes = {}
    for (name, a), (_, b) in zip(base.named_children(), tuned.named_children(), strict=True):
        pairs = [(x.detach(), y.detach()) for x, y in zip(a.parameters(), b.parameters(), strict=True)]
        if pairs:
            moved = sum(float(((y - x) ** 2).sum()) for x, y in pairs) ** 0.5
            changes[name] = moved / sum(float((x**2).sum()) for x, _ in pairs) ** 0.5
    return changes


def absolute_change(base, tuned):
    """The typical slip: the size of the change, not relative to the size of the weights."""
    return {name: sum(((y - x) ** 2).sum().item() for x, y in zip(a.parameters(), b.parameters(), strict=True)) ** 0.5
            for (name, a), (_, b) in zip(base.named_children(), tuned.named_children(), strict=True)
            if list(a.parameters())}


def lora_parameters(unet, rank):
    total = 0
    for name, module in unet.named_modules():
        if any(name == t or name.endswith("." + t) for t in LORA_TARGETS):
            if isinstance(module, torch.nn.Conv2d):
                k = module.kernel_size[0] * module.kernel_size[1]
                total += rank * module.in_channels * k + module.out_channels * rank
            else:
                total += rank * (module.in_features + module.out_features)
    return total


def lora_parameters_no_kernel(unet, rank):
    """The typical slip: a convolution's A counted as if it were 1 × 1."""
    total = 0
    for name, module in unet.named_modules():
        if any(name == t or name.endswith("." + t) for t in LORA_TARGETS):
            inputs = module.in_channels if isinstance(module, torch.nn.Conv2d) else module.in_features
            outputs = module.out_channels if isinstance(module, torch.nn.Conv2d) else module.out_features
            total += rank * (inputs + outputs)
    return total


def merge_lora(W, A, B, alpha, r):
    return W + (alpha / r) * B @ A


def stub(*args):
    raise NotImplementedError(TODO)


def test_the_ddim_step_is_checked_against_ddim_scheduler_for_eps_and_v():
    assert ex6.check_ddim_step(ddim_step).status == "right"
    verdict = ex6.check_ddim_step(ddim_step_eps_only)
    assert verdict.status == "wrong" and "v_prediction" in verdict.en and "v_prediction" in verdict.zh
    assert "DDIMScheduler.step" in verdict.en and "x_t'" in verdict.zh
    assert ex6.check_ddim_step(stub).status == "not done"
    shape = ex6.check_ddim_step(lambda out, x, a, b, kind: x[0])
    assert shape.status == "wrong" and "shape" in shape.en


def test_the_eta_step_is_checked_against_ddim_scheduler_with_the_same_noise():
    assert ex6.check_ddim_step_eta(ddim_step_eta).status == "right"
    verdict = ex6.check_ddim_step_eta(ddim_step_eta_unshrunk)
    assert verdict.status == "wrong" and "eta = 0.5" in verdict.en and "eta = 0.5" in verdict.zh
    assert "√(1−ᾱ_t'−σ²)" in verdict.en
    assert ex6.check_ddim_step_eta(stub).status == "not done"


def test_the_weight_change_is_checked_part_by_part():
    base = pretrained.load("butterflies-32").unet
    tuned = copy.deepcopy(base)
    with torch.no_grad():
        for p in tuned.mid_block.parameters():
            p.mul_(1.01)  # the mid block moves by 1 %, the rest stays
    assert ex6.check_weight_changes(relative_change, tuned).status == "right"
    verdict = ex6.check_weight_changes(absolute_change, tuned)
    assert verdict.status == "wrong" and "relative" in verdict.en and "相对" in verdict.zh
    assert ex6.check_weight_changes(stub, tuned).status == "not done"
    assert ex6.check_weight_changes(relative_change, None).status == "not done"


def test_the_lora_parameter_count_is_checked_against_peft():
    assert ex6.check_lora_parameters(lora_parameters).status == "right"
    verdict = ex6.check_lora_parameters(lora_parameters_no_kernel)
    assert verdict.status == "wrong" and "rank 2" in verdict.en and "秩 2" in verdict.zh
    assert ex6.check_lora_parameters(stub).status == "not done"


def test_the_count_matches_what_add_lora_trains():
    unet = pretrained.load("butterflies-32").unet
    expected = lora_parameters(unet, 4)
    add_lora(unet, rank=4)
    assert sum(p.numel() for p in unet.parameters() if p.requires_grad) == expected


def test_the_lora_merge_is_checked_against_peft_merge_and_unload():
    assert ex6.check_merge_lora(merge_lora).status == "right"
    verdict = ex6.check_merge_lora(lambda W, A, B, alpha, r: W + B @ A)
    assert verdict.status == "wrong" and "alpha / r" in verdict.en and "alpha / r" in verdict.zh
    swapped = ex6.check_merge_lora(lambda W, A, B, alpha, r: W + A.T @ B.T)
    assert swapped.status == "wrong" and "RuntimeError" in swapped.en
    assert ex6.check_merge_lora(stub).status == "not done"
