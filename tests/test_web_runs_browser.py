"""The run pages in a real browser (Debian's chromium via Playwright) against real SSH hosts
(fleet_lab hosts h9-h12) after real `machineroom apply` runs: a check-mode run, a run where
one host fails and three change identically (with --diff), and a second playbook on one host.
What is broken and what changed must be the first thing these pages answer.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_web_browser import CHROMIUM, logged_in, shot
from websupport import Server, make_token

from machineroom.lab import Lab

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
SHOTS = os.environ.get("MACHINEROOM_SCREENSHOTS")
SECRET_WORD = "Tr0ub4dor-and-3-horses"

SITE = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Write the banner
      copy:
        dest: /etc/motd-runs-{{ nonce }}
        content: "managed by machineroom\\nrelease {{ release }}\\n"
    - name: Render the app config
      template:
        src: app.conf.j2
        dest: /etc/mr-runs-app-{{ nonce }}.conf
    - name: Check the disk
      shell: "{{ disk_check }}"
      changed_when: false
    - name: Restart nginx
      command: echo restarting nginx
    - name: Use the secret
      command: echo {{ secret_word }}
      changed_when: false
      no_log: true
"""

OTHER = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Say hello
      command: echo hello
"""


def apply(root: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`machineroom apply ...` in the project (any exit code: a failed host is the point)."""
    return subprocess.run(
        [sys.executable, "-m", "machineroom", "apply", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def run_id_of(out: subprocess.CompletedProcess[str]) -> int:
    """The run id of the recap's outcome line (`run 12: failed in 1.23s`)."""
    found = re.findall(r"^run (\d+): ", out.stdout, re.MULTILINE)
    assert found, out.stdout + out.stderr
    return int(found[-1])


@pytest.fixture(scope="module")
def dash(fleet_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A project of hosts h9-h12 with three recorded applies, and the dashboard."""
    root = tmp_path_factory.mktemp("web-runs")
    home = tmp_path_factory.mktemp("web-runs-home")
    (home / ".ssh").mkdir()
    hosts = fleet_lab.hosts[8:12]
    names = [h.name for h in hosts]
    lines = [
        "all:",
        "  vars:",
        f"    ssh_key: {fleet_lab.key}",
        "    user: root",
        "    release: '7'",
        f"    nonce: {secrets.token_hex(4)}",  # files no earlier session of the lab wrote
        "    disk_check: 'true'",
        f"    secret_word: {SECRET_WORD}",
        "  hosts:",
    ]
    for host in hosts[:3]:
        lines.append(f"    {host.name}: {{host: {host.address}}}")
    broken = "echo 'disk check failed: /var is 99% full' >&2; exit 3"
    lines.append(f'    {hosts[3].name}: {{host: {hosts[3].address}, disk_check: "{broken}"}}')
    (root / "inventory.yml").write_text("\n".join(lines) + "\n")
    (root / "playbooks").mkdir()
    (root / "playbooks" / "site.yml").write_text(SITE)
    (root / "playbooks" / "other.yml").write_text(OTHER)
    (root / "playbooks" / "templates").mkdir()
    (root / "playbooks" / "templates" / "app.conf.j2").write_text(
        "listen 8080\nworkers {{ 2 * 2 }}\n"
    )
    (root / ".machineroom").mkdir(mode=0o700)
    (root / ".machineroom" / "known_hosts").write_text(Path(fleet_lab.known_hosts).read_text())
    state = root / ".machineroom" / "state.db"
    env = {"HOME": str(home), "SSH_AUTH_SOCK": "", "NO_COLOR": "1"}
    check = apply(root, env, "playbooks/site.yml", "--check", "--diff")
    assert check.returncode == 0, check.stdout + check.stderr  # commands are skipped
    real = apply(root, env, "playbooks/site.yml", "--diff")
    assert real.returncode == 2, real.stdout + real.stderr
    other = apply(root, env, "playbooks/other.yml", "--limit", names[0])
    assert other.returncode == 0, other.stdout + other.stderr
    tokens = {"viewer": make_token(root, state, "viewer-1", "viewer")}
    server = Server(root, state, [root / "inventory.yml"], env)
    shots = Path(SHOTS) if SHOTS else root / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        yield {
            "server": server,
            "tokens": tokens,
            "hosts": names,
            "shots": shots,
            "root": root,
            "env": env,
            "runs": {
                "check": run_id_of(check),
                "real": run_id_of(real),
                "other": run_id_of(other),
            },
            "real_out": real.stdout,
        }
    finally:
        server.stop()


# The number of lines each cell's text takes (a cell wrapped mid-word takes two).
CELL_LINES = """cells => cells.filter(c => c.offsetParent !== null).map(c => {
  const range = document.createRange();
  range.selectNodeContents(c);
  const tops = [];
  for (const r of range.getClientRects()) {
    if (r.width > 0 && !tops.some(t => Math.abs(t - r.top) < 8)) tops.push(r.top);
  }
  return [c.textContent.trim(), tops.length];
})"""


def wrapped_cells(page: Any, selector: str) -> list[Any]:
    """The cells under `selector` whose text takes more than one line."""
    cells = page.locator(selector).evaluate_all(CELL_LINES)
    assert cells
    return [(text, lines) for text, lines in cells if lines > 1]


def recap_totals(text: str) -> dict[str, int]:
    """The CLI recap's counts summed over its host lines (`h9 : ok=4 changed=3 ...`)."""
    totals: dict[str, int] = {}
    for line in text.splitlines():
        if " : ok=" in line:
            for word, number in re.findall(r"(\w+)=(\d+)", line):
                totals[word] = totals.get(word, 0) + int(number)
    assert totals, text
    return totals


def test_the_runs_list_has_durations_check_marks_and_filters(
    browser: Any, dash: dict[str, Any]
) -> None:
    page = logged_in(browser, dash, "viewer", viewport={"width": 1280, "height": 800})
    url, runs = dash["server"].url, dash["runs"]
    page.goto(url + "/runs")
    rows = page.locator("table.runs tbody tr")
    shown = [int(r) for r in rows.evaluate_all("rows => rows.map(r => r.dataset.run)")]
    assert shown[:3] == [runs["other"], runs["real"], runs["check"]]
    check_row = page.locator(f"tr[data-run='{runs['check']}']")
    assert check_row.get_attribute("data-check") == "1"
    assert "check" in check_row.locator(".tag.check").inner_text()
    assert page.locator(f"tr[data-run='{runs['real']}'] .tag.check").count() == 0
    for run in runs.values():
        took = page.locator(f"tr[data-run='{run}'] [data-duration]").inner_text()
        assert re.fullmatch(r"\d+\.\d+s|\d+m\d\ds", took), took
    assert "playbooks/site.yml" in page.locator(f"tr[data-run='{runs['real']}']").inner_text()
    assert wrapped_cells(page, "table.runs td") == []
    shot(page, dash, "runs")

    page.select_option("select[name=status]", "failed")
    page.click("#run-filters button")
    page.wait_for_url("**status=failed**")
    failed = rows.evaluate_all("rows => rows.map(r => Number(r.dataset.run))")
    assert failed == [runs["real"]]
    page.goto(url + "/runs")
    page.select_option("select[name=playbook]", label="playbooks/other.yml")
    page.click("#run-filters button")
    assert rows.evaluate_all("rows => rows.map(r => Number(r.dataset.run))") == [runs["other"]]
    page.goto(url + "/runs")
    page.fill("input[name=host]", dash["hosts"][3])
    page.click("#run-filters button")
    on_host = rows.evaluate_all("rows => rows.map(r => Number(r.dataset.run))")
    assert on_host == [runs["real"], runs["check"]]  # the other playbook ran on h9 only
    page.context.close()


def test_the_runs_list_fits_a_phone(browser: Any, dash: dict[str, Any]) -> None:
    phone = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 1, "is_mobile": True}
    page = logged_in(browser, dash, "viewer", **phone)
    for path in ("/runs", f"/runs/{dash['runs']['real']}", "/changes", "/audit"):
        page.goto(dash["server"].url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, path  # a wide table scrolls inside its box, not the page
    page.goto(dash["server"].url + "/runs")
    assert wrapped_cells(page, "table.runs td") == []
    shot(page, dash, "phone-runs")
    page.goto(dash["server"].url + f"/runs/{dash['runs']['real']}")
    shot(page, dash, "phone-run")
    page.context.close()


def test_the_run_page_is_a_matrix_with_identical_hosts_folded(
    browser: Any, dash: dict[str, Any]
) -> None:
    page = logged_in(browser, dash, "viewer", viewport={"width": 1280, "height": 900})
    h9, h10, h11, h12 = dash["hosts"]
    run = dash["runs"]["real"]
    page.goto(dash["server"].url + f"/runs/{run}")
    heads = page.locator("table.matrix th.host-col").all_inner_texts()
    assert heads == [h12, f"{h9}, {h10}, {h11}"]  # the host that failed first
    tasks = page.locator("tr.task-row").evaluate_all("rows => rows.map(r => r.dataset.task)")
    assert tasks == [
        "Write the banner",
        "Render the app config",
        "Check the disk",
        "Restart nginx",
        "Use the secret",
    ]
    statuses = page.locator("tr.task-row").evaluate_all(
        "rows => rows.map(r => [...r.querySelectorAll('td')].map(td =>"
        " (td.querySelector('[data-status]') || {dataset: {}}).dataset.status || '-'))"
    )
    assert statuses == [
        ["changed", "changed"],
        ["changed", "changed"],
        ["failed", "ok"],
        ["-", "changed"],
        ["-", "ok"],
    ]
    assert page.locator("table.matrix td[data-status]").count() == 0  # statuses sit on links
    # the counts are the CLI recap's (ok includes changed)
    shown = {
        badge.get_attribute("data-count"): int(badge.inner_text().split()[-1])
        for badge in page.locator("#run-counts [data-count]").all()
    }
    cli = subprocess.run(
        [sys.executable, "-m", "machineroom", "show", str(run)],
        cwd=dash["root"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **dash["env"]},
    )
    totals = recap_totals(cli.stdout)
    assert shown == {w: totals[w] for w in ("ok", "changed", "failed") if totals[w]}
    assert shown == {"ok": 17, "changed": 11, "failed": 1}
    assert recap_totals(dash["real_out"]) == totals
    # what failed, with its stderr, under the matrix; the cell links to it
    failed = page.locator("table.matrix a.cell[data-status=failed]")
    failed.click()
    page.wait_for_url(f"**/runs/{run}#d-*")
    target = page.locator("section.detail:target")
    assert "disk check failed: /var is 99% full" in target.inner_text()
    # what is broken comes first; a change made alike on every host is told once
    assert page.locator("section.detail").first.get_attribute("data-status") == "failed"
    changed = page.locator("section.detail[data-status=changed]").first
    assert "+managed by machineroom" in changed.locator("pre.diff").inner_text()
    assert f"on {h9}, {h10}, {h11}, {h12}" in changed.locator("h3").inner_text()
    page.locator("tr.task-row[data-task='Write the banner'] a.cell").last.click()
    assert page.locator("section.detail:has(span:target)").count() == 1
    shot(page, dash, "run")
    # an ok cell opens the result itself, naming the hosts with the same result
    assert SECRET_WORD not in page.content()
    page.locator("tr.task-row[data-task='Check the disk'] a.cell[data-status=ok]").click()
    page.wait_for_url(f"**/runs/{run}/results/*")
    assert "Check the disk" in page.inner_text("h1") and h9 in page.inner_text("h1")
    assert page.inner_text("#same-hosts") == f"{h10}, {h11}"
    page.context.close()


def test_the_run_page_filters_failed_and_changed_tasks(browser: Any, dash: dict[str, Any]) -> None:
    page = logged_in(browser, dash, "viewer", viewport={"width": 1280, "height": 900})
    run = dash["runs"]["real"]
    page.goto(dash["server"].url + f"/runs/{run}")
    page.check("#only input[value=failed]")
    page.click("#only button")
    page.wait_for_url("**only=failed**")
    assert page.locator("tr.task-row").evaluate_all("r => r.map(x => x.dataset.task)") == [
        "Check the disk"
    ]
    assert page.locator("table.matrix th.host-col").all_inner_texts() == [dash["hosts"][3]]
    page.goto(dash["server"].url + f"/runs/{run}?only=changed")
    assert page.locator("tr.task-row").count() == 3
    assert page.locator("table.matrix a.cell[data-status=ok]").count() == 0
    page.goto(dash["server"].url + f"/runs/{dash['runs']['other']}?only=failed")
    assert "No task failed" in page.inner_text("#no-results")
    page.context.close()


def test_the_changes_view_shows_what_changed_where_with_diffs(
    browser: Any, dash: dict[str, Any]
) -> None:
    page = logged_in(browser, dash, "viewer", viewport={"width": 1280, "height": 900})
    h9, h10, h11, h12 = dash["hosts"]
    runs = dash["runs"]
    page.goto(dash["server"].url + f"/runs/{runs['real']}")
    page.click("nav >> text=Changes")
    page.wait_for_url("**/changes")
    entries = page.locator("section.change")
    seen = [
        tuple(entry)
        for entry in entries.evaluate_all(
            "es => es.map(e => [Number(e.dataset.run), e.dataset.task, e.dataset.hosts])"
        )
    ]
    # newest run first; the hosts that changed alike folded into one entry
    assert [run for run, _, _ in seen] == sorted((run for run, _, _ in seen), reverse=True)
    every = f"{h9} {h10} {h11} {h12}"
    assert sorted(seen) == sorted(
        [
            (runs["other"], "Say hello", h9),
            (runs["real"], "Restart nginx", f"{h9} {h10} {h11}"),
            (runs["real"], "Render the app config", every),
            (runs["real"], "Write the banner", every),
            (runs["check"], "Render the app config", every),
            (runs["check"], "Write the banner", every),
        ]
    )
    config = entries.filter(has_text="Render the app config").first
    assert "+workers 4" in config.locator("pre.diff").inner_text()
    assert config.locator(".tag.check").count() == 0
    assert entries.filter(has_text="Render the app config").nth(1).locator(".tag.check").count()
    shot(page, dash, "changes")
    page.fill("input[name=host]", h12)
    page.select_option("select[name=since]", "1h")
    page.click("form.filters button")
    page.wait_for_url("**since=1h**")
    assert entries.count() == 4  # the real and the check run's banner and config
    assert all(e == h12 for e in entries.evaluate_all("es => es.map(e => e.dataset.hosts)"))
    page.goto(dash["server"].url + "/changes")
    page.select_option("select[name=mode]", "applied")
    page.click("form.filters button")
    page.wait_for_url("**mode=applied**")
    assert runs["check"] not in [
        int(r) for r in entries.evaluate_all("es => es.map(e => e.dataset.run)")
    ]
    assert page.locator("section.change .tag.check").count() == 0
    page.goto(dash["server"].url + "/changes?host=nobody")
    assert "No changes on nobody" in page.inner_text("main")
    page.context.close()


def test_the_audit_log_shows_the_task_call_and_keeps_the_script_one_click_away(
    browser: Any, dash: dict[str, Any]
) -> None:
    page = logged_in(browser, dash, "viewer", viewport={"width": 1280, "height": 900})
    page.goto(dash["server"].url + f"/audit?run={dash['runs']['real']}&host={dash['hosts'][0]}")
    rows = page.locator("tr.audit-row")
    texts = page.locator("tr.audit-row .action").all_inner_texts()  # shown without a click
    assert "command: echo restarting nginx" in texts
    assert "command: (hidden: no_log)" in texts
    assert SECRET_WORD not in page.content()
    assert any(t.startswith(("copy: dest=/etc/motd-runs-", "template: ")) for t in texts)
    assert "__mr_s=$(date" not in " ".join(texts)  # the wrapper is not what a row says first
    sent = rows.filter(has_text="restarting nginx").first.locator("details.sent")
    assert not sent.locator("pre.command").is_visible()
    shot(page, dash, "audit")
    sent.locator("summary").click()
    assert "__mr_s=$(date" in sent.locator("pre.command").inner_text()
    page.context.close()
    # so do the API and the CLI's `history RUN`
    with dash["server"].client(dash["tokens"]["viewer"]) as client:
        entries = client.get("/api/audit", params={"run": dash["runs"]["real"]}).json()
    assert any("command: echo restarting nginx" in e["action"].splitlines() for e in entries)
    cli = subprocess.run(
        [sys.executable, "-m", "machineroom", "history", str(dash["runs"]["real"])],
        cwd=dash["root"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **dash["env"]},
    )
    assert "command: echo restarting nginx" in cli.stdout, cli.stdout + cli.stderr
    assert "command: (hidden: no_log)" in cli.stdout
    assert "__mr_s=$(date" not in cli.stdout and SECRET_WORD not in cli.stdout
