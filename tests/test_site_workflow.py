"""The workflow that publishes the website on GitHub Pages: it parses, runs the course in cpu, then `make site`,
and deploys the folder `make site` writes (it cannot run here; the commands it calls do)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "site.yml"


def _workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and "jobs" in data, f"{WORKFLOW} is not a workflow"
    return data


def test_site_workflow_builds_the_site_after_a_cpu_run_on_pushes_to_main():
    data = _workflow()
    on = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` key as True
    assert "main" in on["push"]["branches"]
    runs = [step.get("run", "") for step in data["jobs"]["build"]["steps"]]
    course = next(i for i, r in enumerate(runs) if "make course" in r)
    site = next(i for i, r in enumerate(runs) if r.strip() == "make site")
    assert "PROFILE=cpu" in runs[course] and course < site, "make site must follow a cpu run of the course"


def test_site_workflow_deploys_what_make_site_writes_to_pages():
    data = _workflow()
    uses = {step.get("uses", "").split("@")[0]: step for job in data["jobs"].values() for step in job["steps"]}
    assert uses["actions/upload-pages-artifact"]["with"]["path"] == "build/site"
    assert "actions/deploy-pages" in uses
    assert data["permissions"]["pages"] == "write" and data["permissions"]["id-token"] == "write"
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "SITE_OUT ?= build/site\n" in makefile, "make site no longer writes build/site: the workflow deploys it"
