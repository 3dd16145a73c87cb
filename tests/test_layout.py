"""The layout docs/contributing.md describes: ``course_utils`` is what the chapters use, ``course_tools`` is the
course's machinery beside it, and no import runs in a circle (at the top of a file or inside a function)."""

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
PACKAGES = ("course_utils", "course_tools")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def imported(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The course's modules a piece of code imports, wherever the import stands (``from a import b`` counts
    ``a`` and, where ``b`` is a module, ``a.b``)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            names.update([prefix, *(f"{prefix}.{alias.name}" for alias in node.names)])
    return {name for name in names if name in MODULES} - {module}


GRAPH = {m: imported(ast.parse(p.read_text(encoding="utf-8")), m, p.name == "__init__.py") for m, p in MODULES.items()}


def code_of(notebook: Path) -> str:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    lines = [line for c in cells if c["cell_type"] == "code" for line in "".join(c["source"]).splitlines()]
    return "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))


def test_every_module_of_course_utils_is_used_by_a_chapter():
    used = set()
    for notebook in NOTEBOOKS:
        code = code_of(notebook)
        used |= imported(ast.parse(code), "__main__", False)
        text = notebook.read_text(encoding="utf-8")  # a script the chapter runs, or tells the learner to run
        used |= {m for m in re.findall(r"course_utils(?:\.\w+)+", code) + re.findall(r"python -m ([\w.]+)", text)
                 if m in MODULES}
    seen, todo = set(), ["course_utils", *used]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += GRAPH[module] | {m for m in MODULES if module.startswith(m + ".")}  # a module's packages
    unused = sorted(m for m in MODULES if m.startswith("course_utils") and m not in seen)
    assert not unused, (f"{unused}: no chapter imports these (directly or through another module) or runs them; "
                        "the course's machinery belongs in course_tools/")


def test_the_learners_package_never_imports_the_machinery():
    upward = {m: sorted(d for d in deps if d.startswith("course_tools"))
              for m, deps in GRAPH.items() if m.startswith("course_utils")}
    assert not {m: d for m, d in upward.items() if d}, "course_utils must install and run without course_tools"


def test_no_import_cycle():
    state, stack, cycles = {}, [], []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for dep in sorted(GRAPH[module]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert not cycles, f"import cycles: {cycles}"
