"""The fleet pages answer first what is broken and what changed, in a real headless browser
(Debian's chromium via Playwright) against real SSH hosts (fleet_lab hosts h9-h12): a real
failed apply, a real apply stopped half-way, a host only the database knows, `forget`.

Screenshots go to $MACHINEROOM_SCREENSHOTS when set, else to tmp (as test_web_browser.py).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import machineroom as run_cli
from websupport import CHROMIUM, Server, machineroom, make_token, wait_for

from machineroom.lab import Lab

SHOTS = os.environ.get("MACHINEROOM_SCREENSHOTS")  # read at import: `hermetic` clears it

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")

FAILING = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Write the banner
      copy:
        dest: /etc/motd-fleet-test
        content: "managed by machineroom\\n"
    - name: Check the disk
      shell: "test {{ inventory_hostname }} != BROKEN || { echo disk check failed >&2; exit 3; }"
"""

SLOW = """\
- hosts: db
  gather_facts: false
  tasks:
    - name: Write the release note
      copy:
        dest: /etc/release-fleet-test
        content: "2.0\\n"
    - name: Wait for the deploy window
      command: sleep 297
"""


@pytest.fixture(scope="module")
def dash(fleet_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Hosts h9, h10 (web), h11 (db), h12 (in no group), collected and with facts; a failed
    apply (h10 fails), then an apply of db stopped by SIGTERM; a host `old1` imported from a
    scratch list; the server."""
    root = tmp_path_factory.mktemp("web-fleet")
    home = tmp_path_factory.mktemp("web-fleet-home")
    (home / ".ssh").mkdir()
    hosts = fleet_lab.hosts[8:12]
    names = [h.name for h in hosts]
    lines = ["all:", "  vars:", f"    ssh_key: {fleet_lab.key}", "    user: root", "  hosts:"]
    lines += [f"    {hosts[3].name}: {{host: {hosts[3].address}}}", "  children:"]
    for group, members in (("web", hosts[:2]), ("db", hosts[2:3])):
        lines += [f"    {group}:", "      hosts:"]
        lines += [f"        {h.name}: {{host: {h.address}}}" for h in members]
    (root / "inventory.yml").write_text("\n".join(lines) + "\n")
    (root / "playbooks").mkdir()
    (root / "playbooks" / "failing.yml").write_text(FAILING.replace("BROKEN", names[1]))
    (root / "playbooks" / "slow.yml").write_text(SLOW)
    (root / "scratch.txt").write_text("old1--127.0.0.1--root------22\n")
    (root / ".machineroom").mkdir(mode=0o700)
    (root / ".machineroom" / "known_hosts").write_text(Path(fleet_lab.known_hosts).read_text())
    state = root / ".machineroom" / "state.db"
    env = {"HOME": str(home), "SSH_AUTH_SOCK": ""}
    machineroom("collect", "all", "--no-alerts", cwd=root, env=env)
    machineroom("facts", "all", cwd=root, env=env)
    failed = run_cli("apply", "playbooks/failing.yml", cwd=root, env=env)
    assert failed.returncode == 2, failed.stdout + failed.stderr
    failed_run = int(re.findall(r"run (\d+): failed", failed.stdout + failed.stderr)[-1])
    stopped_run = stop_an_apply_half_way(root, env, names[2])
    machineroom("import", "scratch.txt", "--state", str(state), cwd=root, env=env)
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
            "state": state,
            "env": env,
            "failed_run": failed_run,
            "stopped_run": stopped_run,
        }
    finally:
        server.stop()


def stop_an_apply_half_way(root: Path, env: dict[str, str], host: str) -> int:
    """`apply playbooks/slow.yml` stopped with SIGTERM while its `sleep` runs on `host`, as
    a terminal closing or a `kill` would; the id of the run."""
    log = root / "slow-apply.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "machineroom", "apply", "playbooks/slow.yml"],
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )
    try:
        # The second task's command runs on the host once its `sleep` shows up there (the
        # lab host's own init sleeps too, with another argument).
        wait_for(
            lambda: (
                run_cli("run", host, "--", "pgrep -f '^sleep 297$'", cwd=root, env=env).returncode
                == 0
            ),
            timeout=60,
            every=0.3,
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 99, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return int(re.findall(r"run (\d+): interrupted", log.read_text())[-1])


def logged_in(browser: Any, dash: dict[str, Any], **context: Any) -> Any:
    """A new page whose browser context logged in with the viewer's token."""
    page = browser.new_context(**context).new_page()
    page.goto(dash["server"].url + "/")
    page.fill("#token", dash["tokens"]["viewer"])
    page.click("button[type=submit]")
    page.wait_for_url(dash["server"].url + "/")
    return page


def shot(page: Any, dash: dict[str, Any], name: str) -> None:
    """Save a full-page screenshot."""
    page.screenshot(path=str(dash["shots"] / f"{name}.png"), full_page=True)


def row(page: Any, host: str) -> Any:
    return page.locator(f"tr.host[data-host={host}]")


def test_the_host_that_failed_its_last_apply_comes_first(
    browser: Any, dash: dict[str, Any]
) -> None:
    h9, h10, h11, h12 = dash["hosts"]
    page = logged_in(browser, dash, viewport={"width": 1280, "height": 900})
    order = page.locator("tr.host").evaluate_all("rows => rows.map(r => r.dataset.host)")
    # web holds the broken host, db the interrupted one, then the host in no group, then the
    # host only the database knows
    assert order == [h10, h9, h11, h12, "old1"]
    sections = page.locator("section.group").evaluate_all(
        "sections => sections.map(s => s.dataset.section)"
    )
    assert sections == ["web", "db", "ungrouped", "not in the inventory"]
    assert "1 failing" in page.inner_text("h1")
    broken = row(page, h10)
    assert broken.get_attribute("data-rank") == "0"
    # reachable, but not a green "up" alone: the failure is said beside it
    assert broken.locator("td.status .badge").inner_text() == "up"
    assert broken.locator("td.status .problem").inner_text() == "last apply failed"
    assert row(page, h9).locator(".problem").count() == 0
    shot(page, dash, "overview")
    page.select_option("select[name=status]", "failing")
    page.click("form.filters button")
    assert page.locator("tr.host").evaluate_all("rows => rows.map(r => r.dataset.host)") == [h10]
    page.context.close()


def test_the_last_apply_column_says_how_it_ended_and_links_to_the_run(
    browser: Any, dash: dict[str, Any]
) -> None:
    h9, h10, h11, _ = dash["hosts"]
    page = logged_in(browser, dash, viewport={"width": 1280, "height": 900})
    failed = row(page, h10).locator("td.last-apply")
    assert failed.locator(".badge").inner_text() == "failed"
    assert "playbooks/failing.yml" in failed.inner_text()
    assert "1 failed" in failed.inner_text()
    assert re.search(r"\d+ s ago|\d+ min ago", failed.inner_text())
    changed = row(page, h9).locator("td.last-apply")
    assert changed.locator(".badge").inner_text() == "changed"
    assert "2 changed" in changed.inner_text()  # the banner and the command
    stopped = row(page, h11).locator("td.last-apply")
    assert stopped.locator(".badge").inner_text() == "interrupted"
    assert "playbooks/slow.yml" in stopped.inner_text()
    assert row(page, "old1").locator("td.last-apply").inner_text() == "none"
    link = failed.locator("a.run-link")
    assert link.inner_text() == f"run {dash['failed_run']}"
    link.click()
    page.wait_for_url(f"**/runs/{dash['failed_run']}")
    assert page.locator("main .error[role=alert]").count() == 0
    page.context.close()


def test_pending_work_is_said_in_words(browser: Any, dash: dict[str, Any]) -> None:
    _, h10, h11, _ = dash["hosts"]
    page = logged_in(browser, dash, viewport={"width": 1280, "height": 900})
    stopped = row(page, h11).locator(".pending-text").inner_text()
    assert stopped.startswith("apply interrupted at task “Wait for the deploy window”")
    assert stopped.endswith("— rerun with machineroom apply playbooks/slow.yml --resume")
    failed = row(page, h10).locator(".pending-text").inner_text()
    assert failed.startswith("apply failed at task “Check the disk”")
    assert ": non-zero return code" in failed
    assert "{" not in page.inner_text("main")  # no JSON anywhere
    page.goto(dash["server"].url + f"/hosts/{h11}")
    pending = page.inner_text("#pending")
    assert pending.startswith("Pending: apply interrupted at task “Wait for the deploy window”")
    assert "Rerun with machineroom apply playbooks/slow.yml --resume" in pending
    assert page.locator("#last-apply .badge").inner_text() == "interrupted"
    assert page.inner_text("#problems") == "last apply interrupted"
    assert "reason" not in page.inner_text("main")
    page.context.close()


def test_facts_are_tables(browser: Any, dash: dict[str, Any]) -> None:
    h9 = dash["hosts"][0]
    page = logged_in(browser, dash, viewport={"width": 1280, "height": 900})
    page.goto(dash["server"].url + f"/hosts/{h9}")
    facts = page.locator("#facts")
    assert facts.locator("th[scope=row]", has_text=re.compile("^hostname$")).count() == 1
    os_row = facts.locator("tr", has=page.locator("th[scope=row]", has_text=re.compile("^os$")))
    assert "pretty_name" in os_row.first.inner_text()
    assert "Debian" in os_row.first.inner_text()
    disks = facts.locator("table.facts.list").first
    assert "mount" in disks.locator("thead").inner_text()
    assert disks.locator("tbody tr").count() >= 1
    assert "{" not in facts.inner_text() and '":' not in facts.inner_text()
    shot(page, dash, "host")
    page.context.close()


def test_a_host_the_inventory_does_not_list_is_apart_until_forgotten(
    browser: Any, dash: dict[str, Any]
) -> None:
    page = logged_in(browser, dash, viewport={"width": 1280, "height": 900})
    outside = page.locator("section.group.outside")
    assert outside.locator("h2").inner_text().startswith("not in the inventory")
    assert outside.locator("tr.host").evaluate_all("r => r.map(x => x.dataset.host)") == ["old1"]
    assert "machineroom forget old1" in outside.locator("#outside-hint").inner_text()
    assert page.locator("section.group", has_text="ungrouped").locator("tr.host").count() == 1
    page.goto(dash["server"].url + "/hosts/old1")
    assert "machineroom forget old1" in page.inner_text("#not-in-inventory")
    with dash["server"].client(dash["tokens"]["viewer"]) as api:
        hosts = {h["id"]: h for h in api.get("/api/hosts").json()}
        failing = api.get("/api/hosts", params={"status": "failing"}).json()
    assert [h["id"] for h in failing] == [dash["hosts"][1]]
    h10, h11 = dash["hosts"][1:3]
    assert hosts["old1"]["in_inventory"] is False and hosts[h10]["in_inventory"] is True
    assert hosts[h10]["last_apply"]["status"] == "failed"
    assert hosts[h10]["last_apply"]["run_id"] == dash["failed_run"]
    assert (hosts[h10]["rank"], hosts[h10]["problems"]) == (0, ["last apply failed"])
    assert hosts[h11]["last_apply"]["run_id"] == dash["stopped_run"]
    assert hosts[h11]["pending"].startswith("apply interrupted at task")
    assert hosts[h11]["pending_command"] == "machineroom apply playbooks/slow.yml --resume"
    machineroom("forget", "old1", "--state", str(dash["state"]), cwd=dash["root"], env=dash["env"])
    page.goto(dash["server"].url + "/")
    assert page.locator("section.group.outside").count() == 0
    assert page.locator("tr.host[data-host=old1]").count() == 0
    page.goto(dash["server"].url + "/hosts/old1")
    assert "unknown host 'old1'" in page.inner_text("main")
    page.context.close()


def test_the_404_page_keeps_the_navigation(browser: Any, dash: dict[str, Any]) -> None:
    page = logged_in(browser, dash, viewport={"width": 1280, "height": 600})
    response = page.goto(dash["server"].url + "/no-such-page")
    assert response.status == 404
    assert "no such page or endpoint: /no-such-page" in page.inner_text("main")
    nav = page.locator("header nav a").all_inner_texts()
    assert "Fleet" in nav and "Runs" in nav
    assert "viewer-1" in page.inner_text("header .who")
    shot(page, dash, "not-found")
    page.click("header nav >> text=Fleet")
    page.wait_for_url(dash["server"].url + "/")
    page.context.close()
