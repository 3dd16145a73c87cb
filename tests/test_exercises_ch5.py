"""Chapter 5's exercises: every reference solution passes its check; a typical wrong answer fails with its message."""

import re

from course_utils.exercises import TODO
from course_utils.exercises import chapter5 as ch5


def accumulated_grads(model, loss_fn, images, k):
    """The reference solution: k micro-batches, each loss divided by k, gradients summed by backward."""
    for chunk in images.chunk(k):
        (loss_fn(model, chunk) / k).backward()
    return [p.grad for p in model.parameters()]


def undivided_grads(model, loss_fn, images, k):
    for chunk in images.chunk(k):
        loss_fn(model, chunk).backward()
    return [p.grad for p in model.parameters()]


def zeroed_grads(model, loss_fn, images, k):  # zeroing inside the loop keeps only the last micro-batch
    for chunk in images.chunk(k):
        model.zero_grad()
        (loss_fn(model, chunk) / k).backward()
    return [p.grad for p in model.parameters()]


def resume_position(step, accumulation_steps, batches_per_epoch):
    return divmod(step * accumulation_steps, batches_per_epoch)


def newest_checkpoint(names):
    steps = [int(n.split("-")[1]) for n in names if re.fullmatch(r"checkpoint-\d+", n)]
    return f"checkpoint-{max(steps)}" if steps else None


def stub(*args):
    raise NotImplementedError(TODO)


def both_languages(verdict) -> bool:
    return bool(verdict.en) and re.search(r"[\u4e00-\u9fff]", verdict.zh) is not None


def test_every_reference_solution_passes():
    assert ch5.check_accumulation(accumulated_grads)
    assert ch5.check_effective_batch_size(lambda per, steps, processes: per * steps * processes)
    assert ch5.check_resume_position(resume_position)
    assert ch5.check_newest_checkpoint(newest_checkpoint)


def test_untouched_stubs_are_not_done_yet():
    for check in (ch5.check_accumulation, ch5.check_effective_batch_size, ch5.check_resume_position,
                  ch5.check_newest_checkpoint):
        assert check(stub).status == "not done"
        assert check(None).status == "not done"


def test_accumulation_without_dividing_by_k_or_zeroing_inside_the_loop_is_named():
    verdict = ch5.check_accumulation(undivided_grads)
    assert verdict.status == "wrong" and "3 times the big batch's" in verdict.en and "除以 k" in verdict.zh
    verdict = ch5.check_accumulation(zeroed_grads)
    assert verdict.status == "wrong" and "without zeroing" in verdict.en and both_languages(verdict)


def test_an_effective_batch_without_the_processes_or_the_accumulation_is_named():
    verdict = ch5.check_effective_batch_size(lambda per, steps, processes: per * steps)
    assert verdict.status == "wrong" and "processes takes its own batch" in verdict.en and "进程" in verdict.zh
    verdict = ch5.check_effective_batch_size(lambda per, steps, processes: per * processes)
    assert verdict.status == "wrong" and "accumulated batches" in verdict.en and both_languages(verdict)


def test_a_resume_that_forgets_the_accumulation_or_the_skip_is_named():
    verdict = ch5.check_resume_position(lambda step, k, per_epoch: divmod(step, per_epoch))
    assert verdict.status == "wrong" and "each update used 2 batches" in verdict.en and "2 个批次" in verdict.zh
    verdict = ch5.check_resume_position(lambda step, k, per_epoch: (step * k // per_epoch, 0))
    assert verdict.status == "wrong" and "trained on twice" in verdict.en and both_languages(verdict)
    verdict = ch5.check_resume_position(lambda step, k, per_epoch: step * k // per_epoch)
    assert verdict.status == "wrong" and "return two numbers" in verdict.en and both_languages(verdict)


def test_a_checkpoint_picked_in_text_order_or_an_unfinished_one_is_named():
    verdict = ch5.check_newest_checkpoint(lambda names: max(n for n in names if n.startswith("checkpoint-"))
                                          if any(n.startswith("checkpoint-") for n in names) else None)
    assert verdict.status == "wrong" and "text order" in verdict.en and "步数" in verdict.zh
    verdict = ch5.check_newest_checkpoint(lambda names: max(names, key=lambda n: int(re.sub(r"\D", "", n) or 0))
                                          if names else None)
    assert verdict.status == "wrong" and "never finished" in verdict.en and both_languages(verdict)
