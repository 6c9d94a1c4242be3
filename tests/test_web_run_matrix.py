"""The run page's matrix tells apart what differs and hides nothing, in a real browser (Debian's
chromium via Playwright): hosts failing one command with different stderr keep their own
columns and blocks, an ignored failure looks ignored (not FAIL), and past the matrix's columns
every failure is still listed, with a host filter. Real `machineroom apply` runs on fleet_lab
hosts h9-h11, and a real SQLite database of 70 failing hosts."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import machineroom as run_cli
from test_web_browser import CHROMIUM, logged_in, shot
from websupport import Server, make_token

from machineroom.lab import Lab
from machineroom.state import open_state
from machineroom.web.run_views import MAX_COLUMNS

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")

SITE = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Probe an optional tool
      command: "false"
      ignore_errors: true
    - name: Check the disk
      shell: "{{ disk_check }}"
      changed_when: false
"""


@pytest.fixture(scope="module")
def dash(fleet_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """h9 and h10 fail the disk check with different stderr, h11 passes; all three ignore
    a failing probe. Then a run of 70 hosts recorded in the same database."""
    root = tmp_path_factory.mktemp("web-matrix")
    home = tmp_path_factory.mktemp("web-matrix-home")
    (home / ".ssh").mkdir()
    hosts = fleet_lab.hosts[8:11]
    checks = [
        "echo '/var is 99% full' >&2; exit 3",
        "echo '/srv is 97% full' >&2; exit 3",
        "true",
    ]
    lines = ["all:", "  vars:", f"    ssh_key: {fleet_lab.key}", "    user: root", "  hosts:"]
    for host, check in zip(hosts, checks, strict=True):
        lines.append(f'    {host.name}: {{host: {host.address}, disk_check: "{check}"}}')
    (root / "inventory.yml").write_text("\n".join(lines) + "\n")
    (root / "site.yml").write_text(SITE)
    (root / ".machineroom").mkdir(mode=0o700)
    (root / ".machineroom" / "known_hosts").write_text(Path(fleet_lab.known_hosts).read_text())
    state = root / ".machineroom" / "state.db"
    env = {"HOME": str(home), "SSH_AUTH_SOCK": "", "NO_COLOR": "1"}
    out = run_cli("apply", "site.yml", cwd=root, env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    run_id = int(re.findall(r"^run (\d+): ", out.stdout, re.MULTILINE)[-1])
    with open_state(state) as store:  # a big run: every host failed its own way
        wide = store.start_run("apply", "machineroom apply wide.yml")
        for n in range(1, 71):
            store.record_task_result(
                wide,
                f"w{n:02d}",
                "Migrate the database",
                "failed",
                message="non-zero return code",
                stderr=f"w{n:02d}: lock held by migration {n}",
            )
        store.finish_run(wide, "failed")
    token = make_token(root, state, "viewer-1", "viewer")
    server = Server(root, state, [root / "inventory.yml"], env)
    try:
        yield {
            "server": server,
            "tokens": {"viewer": token},
            "hosts": [h.name for h in hosts],
            "run": run_id,
            "wide": wide,
            "recap": out.stdout,
            "shots": Path(os.environ.get("MACHINEROOM_SCREENSHOTS") or root / "shots"),
        }
    finally:
        server.stop()


def test_hosts_failing_with_different_stderr_keep_their_own_columns_and_blocks(
    browser: Any, dash: dict[str, Any]
) -> None:
    h9, h10, h11 = dash["hosts"]
    page = logged_in(browser, dash, "viewer", viewport={"width": 1280, "height": 900})
    page.goto(dash["server"].url + f"/runs/{dash['run']}")
    columns = page.locator("th.host-col").evaluate_all("cs => cs.map(c => c.dataset.hosts)")
    assert sorted(columns) == sorted([h9, h10, h11]), columns  # nothing folded
    failed = page.locator("section.detail[data-status=failed]").all_inner_texts()
    assert len(failed) == 2, failed
    assert any("/var is 99% full" in t and h9 in t for t in failed), failed
    assert any("/srv is 97% full" in t and h10 in t for t in failed), failed
    # the whole result of h9 does not claim h10 had the same
    page.locator("section.detail", has_text="/var is 99% full").get_by_text("the whole").click()
    assert "/var is 99% full" in page.locator("pre.stderr").inner_text()
    assert page.locator("#same-hosts").count() == 0
    page.context.close()


def test_an_ignored_failure_looks_ignored_and_counts_as_the_recap_does(
    browser: Any, dash: dict[str, Any]
) -> None:
    page = logged_in(browser, dash, "viewer", viewport={"width": 1280, "height": 900})
    page.goto(dash["server"].url + f"/runs/{dash['run']}")
    row = page.locator("tr.task-row[data-task='Probe an optional tool']")
    looks = row.locator("a.cell").evaluate_all(
        "cs => cs.map(c => [c.dataset.status, c.textContent])"
    )
    assert looks == [["ignored", "ign"]] * 3, looks  # one look, in every column
    assert page.locator("section.detail", has_text="Probe an optional tool").count() == 0
    assert "Probe an optional tool" in page.locator("#ignored").inner_text()
    # the column that only ignored a failure is not sorted among the failing ones
    first = page.locator("th.host-col").first.get_attribute("data-hosts")
    assert page.locator("th.host-col").last.get_attribute("data-hosts") == dash["hosts"][2]
    assert first in dash["hosts"][:2]
    counts = {
        el.get_attribute("data-count"): int(el.inner_text().split()[-1])
        for el in page.locator("#run-counts [data-count]").all()
    }
    totals: dict[str, int] = {}
    for line in dash["recap"].splitlines():
        if " : ok=" in line:
            for word, number in re.findall(r"(\w+)=(\d+)", line):
                totals[word] = totals.get(word, 0) + int(number)
    assert counts.get("ok") == totals["ok"] and counts.get("failed") == totals["failed"] == 2
    shot(page, dash, "run-ignored")
    page.context.close()


def test_failures_past_the_matrix_columns_are_listed_and_hosts_can_be_filtered(
    browser: Any, dash: dict[str, Any]
) -> None:
    page = logged_in(browser, dash, "viewer", viewport={"width": 1280, "height": 900})
    page.goto(dash["server"].url + f"/runs/{dash['wide']}")
    assert page.locator("th.host-col").count() == MAX_COLUMNS
    hidden = 70 - MAX_COLUMNS
    assert f"{hidden} more hosts" in page.locator("#hidden-hosts").inner_text()
    failed = page.locator("section.detail[data-status=failed]")
    assert failed.count() == 70  # each failed its own way: a block each, w70's too
    assert "w70: lock held by migration 70" in page.locator("#main, body").first.inner_text()
    page.locator("#hidden-hosts a", has_text="filter by host").click()
    page.fill("input[name=host]", "w70")
    page.locator("#only button[type=submit]").click()
    page.wait_for_url(re.compile(r"host=w70"))
    assert page.locator("th.host-col").evaluate_all("cs => cs.map(c => c.dataset.hosts)") == ["w70"]
    assert page.locator("input[name=host]").input_value() == "w70"
    assert page.locator("#hidden-hosts").count() == 0
    page.context.close()
