"""The Prometheus rules pass promtool's checks and unit tests, and link to real doc anchors."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "alerts" / "prometheus" / "outpost-rules.yml"
RULE_TESTS = sorted((ROOT / "alerts" / "prometheus" / "tests").glob("*.yml"))
DOCS = ROOT / "docs" / "alerts.md"

PROMTOOL = shutil.which("promtool")


@pytest.fixture(autouse=True)
def _promtool_installed(request: pytest.FixtureRequest) -> None:
    # A real promtool is a requirement, not an option: fail loudly rather than skip.
    if "promtool" in request.node.name:
        assert PROMTOOL, "promtool not found: install the Debian package `prometheus`"


def _alert_rules() -> list[dict]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_promtool_check_rules() -> None:
    result = _run("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(_alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    assert RULE_TESTS, "no promtool test files"
    result = _run("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_fail_on_a_wrong_expectation(tmp_path: Path) -> None:
    # Guards against tests that pass vacuously: flip one expectation and promtool must fail.
    source = (ROOT / "alerts" / "prometheus" / "tests" / "workers.test.yml").read_text()
    broken = source.replace("worker: w2", "worker: w1", 1)
    assert broken != source
    (tmp_path / "outpost-rules.yml").write_text(RULES.read_text())
    test_file = tmp_path / "tests" / "workers.test.yml"
    test_file.parent.mkdir()
    test_file.write_text(broken)
    result = _run("test", "rules", str(test_file))
    assert result.returncode != 0


def test_every_alert_fires_and_stays_quiet_in_the_unit_tests() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in _alert_rules()}
    assert names - fired == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested not firing"


def _anchors(markdown: str) -> set[str]:
    # GitHub's heading anchors: lower-case, punctuation dropped, spaces to dashes.
    anchors = set()
    for line in markdown.splitlines():
        match = re.match(r"^#{1,6}\s+(.*)$", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


def test_every_alert_has_severity_summary_description_and_doc_link() -> None:
    anchors = _anchors(DOCS.read_text())
    for rule in _alert_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == "docs/alerts.md", name
        assert anchor in anchors, f"{name}: no heading for #{anchor} in docs/alerts.md"
