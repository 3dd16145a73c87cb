"""The exercises' common ground: a check prints a bilingual verdict and never raises."""

from course_utils.exercises import TODO, checked, right, wrong


@checked
def check_double(double):
    got = double(2)
    if got != 4:
        return wrong(f"double(2) gave {got}, expected 4", f"double(2) 得到 {got}，应为 4")
    return right("double(2) is 4", "double(2) 等于 4")


def stub(x):
    raise NotImplementedError(TODO)


def test_a_right_answer_is_right(capsys):
    assert check_double(lambda x: 2 * x).status == "right"
    out = capsys.readouterr().out
    assert "Right" in out and "正确" in out


def test_a_wrong_answer_says_what_is_off_in_both_languages(capsys):
    verdict = check_double(lambda x: x + 1)
    assert verdict.status == "wrong" and "gave 3" in verdict.en and "得到 3" in verdict.zh
    assert "gave 3" in capsys.readouterr().out


def test_an_untouched_stub_or_a_missing_answer_is_not_done_and_never_raises():
    assert check_double(stub).status == "not done"
    assert check_double(None).status == "not done"


def test_an_error_in_the_learners_code_is_named_not_raised():
    verdict = check_double(lambda x: x / 0)
    assert verdict.status == "wrong" and "ZeroDivisionError" in verdict.en and "ZeroDivisionError" in verdict.zh


def test_every_check_cell_prints_its_verdict_once():
    """A check cell ends with ``;``: the verdict is printed by the check, not echoed again as ``Verdict(...)``."""
    import json
    from pathlib import Path

    echoed = []
    for notebook in sorted(Path(__file__).resolve().parents[1].glob("notebooks/**/*.ipynb")):
        for i, cell in enumerate(json.loads(notebook.read_text(encoding="utf-8"))["cells"]):
            last = "".join(cell["source"]).rstrip().splitlines()[-1:] if cell["cell_type"] == "code" else []
            if last and last[0].startswith("check_") and not last[0].endswith(";"):
                echoed.append(f"{notebook.name} cell {i}: {last[0]}")
    assert not echoed, echoed
