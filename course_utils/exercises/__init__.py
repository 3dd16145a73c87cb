"""Exercises that check themselves: each chapter's checks live in ``course_utils.exercises.chapterN``.

A learner's code cell holds a stub that raises ``NotImplementedError`` (or an answer left at ``None``); the check
cell below it calls ``check_...(...)``, which prints in English and Chinese whether the answer is right and, if
not, what is off. A check never raises: an untouched stub is "not done yet", an error in the learner's code is
named, so Run All always reaches the end of the notebook.

    from course_utils.exercises import Verdict, checked, right, wrong

    @checked
    def check_double(double) -> Verdict:
        if double(2) != 4:
            return wrong(f"double(2) gave {double(2)}, expected 4", f"double(2) 得到 {double(2)}，应为 4")
        return right("double works", "double 正确")
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

TODO = "Fill me in / 请在这里填写"  # what a stub raises: raise NotImplementedError(TODO)
MARKS = {"right": "✅ Right / 正确", "wrong": "❌ Not yet right / 还不对", "not done": "⏳ Not done yet / 尚未完成"}


@dataclass(frozen=True)
class Verdict:
    """What a check found: ``status`` is "right", "wrong" or "not done"; ``en``/``zh`` say it in each language."""

    status: str
    en: str
    zh: str

    def __bool__(self) -> bool:
        return self.status == "right"

    def __str__(self) -> str:
        return f"{MARKS[self.status]}\n  {self.en}\n  {self.zh}"


def right(en: str, zh: str) -> Verdict:
    """The answer is correct; say what it showed."""
    return Verdict("right", en, zh)


def wrong(en: str, zh: str) -> Verdict:
    """The answer is off; say what is off (a shape, a value at one timestep, a share of samples)."""
    return Verdict("wrong", en, zh)


def not_done() -> Verdict:
    """The stub is untouched (it raised NotImplementedError, or the answer is still None)."""
    return Verdict("not done", "the exercise is not done yet: fill in the cell above and run it again",
                   "这道练习还没做：请填写上面的单元格，然后再运行")


def checked(check: Callable[..., Verdict]) -> Callable[..., Verdict]:
    """Make ``check`` safe to run on anything: print its verdict and return it; a stub or an error never raises."""

    @functools.wraps(check)
    def run(*args, **kwargs) -> Verdict:
        if any(a is None for a in (*args, *kwargs.values())):
            verdict = not_done()
        else:
            try:
                verdict = check(*args, **kwargs)
            except NotImplementedError:
                verdict = not_done()
            except Exception as error:  # the learner's code failed: name the error instead of stopping Run All
                verdict = wrong(f"your code raised {type(error).__name__}: {error}",
                                f"你的代码抛出了 {type(error).__name__}：{error}")
        print(verdict)
        return verdict

    return run


def one_value_each(got, want: torch.Tensor, what_en: str, what_zh: str
                   ) -> tuple[torch.Tensor | None, Verdict | None]:
    """``got`` as a float64 tensor of ``want``'s shape (any shape with one value per entry of ``want`` is
    accepted: (n,), (n, 1, 1, 1), ...), or the "wrong shape" verdict."""
    if hasattr(got, "shape") and hasattr(got, "numel") and got.numel() == want.numel():
        return got.detach().double().cpu().reshape(want.shape), None
    return None, wrong_shape(got, want, what_en, what_zh)


def two_values_each(out, want: torch.Tensor, function: str, names: tuple[str, str]
                    ) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, Verdict | None]:
    """A function's answer ``out`` that should be two tensors (``names``), each one value per entry of ``want``
    (``one_value_each``): the pair as float64 tensors of ``want``'s shape, or the verdict on what is wrong."""
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        pair = f"({names[0]}, {names[1]})"
        return None, wrong(f"{function} should return two tensors, {pair}", f"{function} 应返回两个张量 {pair}")
    values = []
    for got, name in zip(out, names, strict=True):
        value, off = one_value_each(got, want, name, f"{name} ")
        if off is not None:
            return None, off
        values.append(value)
    return (values[0], values[1]), None


def wrong_shape(got, want, what_en: str, what_zh: str) -> Verdict | None:
    """A "wrong" verdict when ``got`` is not a tensor of ``want``'s shape (saying what came back), else None."""
    if hasattr(got, "shape") and tuple(got.shape) == tuple(want.shape):
        return None
    shape = tuple(got.shape) if hasattr(got, "shape") else type(got).__name__
    return wrong(f"{what_en} returned {shape}, expected a tensor of shape {tuple(want.shape)}",
                 f"{what_zh}返回了 {shape}，应为形状 {tuple(want.shape)} 的张量")
