"""The dashboard in a real headless browser (Debian's chromium driven by Playwright) against
real SSH hosts: fleet_lab hosts h9-h12, collected with `machineroom collect`, one applied to
from the dashboard.

Screenshots of every page go to $MACHINEROOM_SCREENSHOTS when set (docs/images for the docs:
`MACHINEROOM_SCREENSHOTS=docs/images pytest tests/test_web_browser.py`), else to tmp.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Error as PlaywrightError
from websupport import CHROMIUM, Server, fill_metrics, machineroom, make_token, wait_for

from machineroom.lab import Lab

# Read at import: the autouse `hermetic` fixture clears MACHINEROOM_* before each test.
SHOTS = os.environ.get("MACHINEROOM_SCREENSHOTS")

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Write the banner
      copy:
        dest: /etc/motd-web-test
        content: "managed by machineroom\\n"
    - name: Take a moment
      command: sleep 1
    - name: Take another moment
      command: sleep 1
    - name: Record the stage
      record: {banner_installed: true}
"""


@pytest.fixture(scope="module")
def dash(fleet_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A project of hosts h9-h12, a day of history plus a real collection, and the server."""
    root = tmp_path_factory.mktemp("web-browser")
    home = tmp_path_factory.mktemp("web-browser-home")
    (home / ".ssh").mkdir()
    hosts = fleet_lab.hosts[8:12]
    names = [h.name for h in hosts]
    lines = ["all:", "  vars:", f"    ssh_key: {fleet_lab.key}", "    user: root", "  children:"]
    for group, members in (("web", hosts[:2]), ("db", hosts[2:])):
        lines += [f"    {group}:", "      hosts:"]
        lines += [f"        {h.name}: {{host: {h.address}}}" for h in members]
    (root / "inventory.yml").write_text("\n".join(lines) + "\n")
    (root / "playbooks").mkdir()
    (root / "playbooks" / "banner.yml").write_text(PLAYBOOK)
    (root / ".machineroom").mkdir(mode=0o700)
    (root / ".machineroom" / "known_hosts").write_text(Path(fleet_lab.known_hosts).read_text())
    state = root / ".machineroom" / "state.db"
    env = {"HOME": str(home), "SSH_AUTH_SOCK": ""}
    fill_metrics(state, names, hours=24 * 7, every=600)
    machineroom("collect", "all", "--no-alerts", cwd=root, env=env)
    machineroom("facts", "all", cwd=root, env=env)
    with sqlite3.connect(state) as db:
        db.execute(
            "INSERT INTO alerts (rule, host_id, subject, severity, state, opened_at, value,"
            " message) VALUES ('disk_full', ?, '/', 'warning', 'open',"
            " strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 91.2, 'disk / is 91.2% full (> 90%)')",
            [names[2]],
        )
    tokens = {role: make_token(root, state, f"{role}-1", role) for role in ("viewer", "operator")}
    server = Server(root, state, [root / "inventory.yml"], env)
    shots = Path(SHOTS) if SHOTS else root / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        yield {"server": server, "tokens": tokens, "hosts": names, "shots": shots, "root": root}
    finally:
        server.stop()


def logged_in(browser: Any, dash: dict[str, Any], role: str, **context: Any) -> Any:
    """A new page whose browser context logged in with the role's token."""
    page = browser.new_context(**context).new_page()
    page.goto(dash["server"].url + "/")
    assert "/login" in page.url  # anything but the login page needs a token
    page.fill("#token", dash["tokens"][role])
    page.click("button[type=submit]")
    page.wait_for_url(dash["server"].url + "/")
    return page


def shot(page: Any, dash: dict[str, Any], name: str) -> None:
    """Save a full-page screenshot."""
    page.screenshot(path=str(dash["shots"] / f"{name}.png"), full_page=True)


def test_login_page_refuses_a_wrong_token(browser: Any, dash: dict[str, Any]) -> None:
    page = browser.new_context(viewport={"width": 1100, "height": 600}).new_page()
    page.goto(dash["server"].url + "/login")
    shot(page, dash, "login")
    page.fill("#token", "mr_not-a-token")
    page.click("button[type=submit]")
    assert "unknown token" in page.inner_text(".error")
    page.context.close()


def test_overview_lists_the_hosts_by_group(browser: Any, dash: dict[str, Any]) -> None:
    page = logged_in(browser, dash, "viewer", viewport={"width": 1280, "height": 800})
    rows = page.locator("tr.host")
    shown = rows.evaluate_all("rows => rows.map(r => r.dataset.host)")
    assert shown == ["h11", "h12", "h9", "h10"]  # group db first, then web; h9 before h10
    assert page.locator("tr.host[data-status=up]").count() == 4
    assert [h.strip().split()[0] for h in page.locator("section.group h2").all_inner_texts()] == [
        "db",
        "web",
    ]
    shot(page, dash, "overview")
    page.fill("input[name=q]", dash["hosts"][0])
    page.click("form.filters button")
    assert page.locator("tr.host").count() == 1
    page.context.close()


def test_host_page_charts_the_metrics(browser: Any, dash: dict[str, Any]) -> None:
    page = logged_in(browser, dash, "viewer", viewport={"width": 1280, "height": 900})
    host = dash["hosts"][0]
    page.click(f"tr.host[data-host={host}] a")
    page.wait_for_url(f"**/hosts/{host}")
    chart = page.locator("svg.chart[data-metric=cpu_used_pct]")
    assert int(chart.get_attribute("data-points")) > 100
    path = chart.locator("path.line").get_attribute("d")
    assert path.startswith("M") and path.count("L") > 100
    assert page.locator("svg.chart").count() >= 4
    assert "banner" not in page.inner_text("body")  # not applied yet
    page.click("nav.windows >> text=7d")
    page.wait_for_url("**window=7d")
    assert int(page.locator("svg.chart[data-metric=load1]").get_attribute("data-points")) > 250
    shot(page, dash, "host")
    page.context.close()


def test_a_viewer_cannot_start_an_apply(browser: Any, dash: dict[str, Any]) -> None:
    page = logged_in(browser, dash, "viewer")
    assert page.locator("#collect-now").count() == 0
    page.goto(dash["server"].url + "/actions")
    assert page.locator("#apply-button").is_disabled()
    assert "viewer" in page.inner_text("#viewer-note")
    csrf = page.get_attribute("meta[name=csrf-token]", "content")
    refused = page.request.post(
        dash["server"].url + "/api/actions/apply",
        data={"playbook": "playbooks/banner.yml"},
        headers={"X-CSRF-Token": csrf},
    )
    assert refused.status == 403 and refused.json()["error"]["code"] == "forbidden"
    form = page.request.post(
        dash["server"].url + "/actions/apply",
        form={"playbook": "playbooks/banner.yml", "csrf": csrf, "check": "on"},
        max_redirects=0,
    )
    assert form.status == 403
    with httpx.Client(base_url=dash["server"].url) as client:
        bearer = {"Authorization": f"Bearer {dash['tokens']['viewer']}"}
        runs = client.get("/api/runs", headers=bearer).json()
        assert not [r for r in runs if r["kind"] == "apply"]
    page.context.close()


def test_an_operator_watches_an_apply_until_it_finishes(browser: Any, dash: dict[str, Any]) -> None:
    page = logged_in(browser, dash, "operator", viewport={"width": 1280, "height": 900})
    page.goto(dash["server"].url + "/actions")
    page.select_option("#playbook", "playbooks/banner.yml")
    page.uncheck("#check")  # really apply
    page.click("#apply-button")
    page.wait_for_url("**/runs/*", timeout=30_000)
    run_id = page.url.rsplit("/", 1)[1]
    # Live: rows appear while the run is still running, then the status flips.
    seen_running = []

    def progress() -> bool:
        try:
            status = page.inner_text("#run-status").strip()
            rows = page.locator("tr.result").count()
        except PlaywrightError:  # the page reloading itself: the run just finished
            return False
        if status == "running":
            seen_running.append(rows)
        # once finished, the page reloads into the task x host matrix
        return status != "running" and page.locator("table.matrix").count() == 1

    wait_for(progress, timeout=90, every=0.1)
    assert seen_running and min(seen_running) < 16
    assert page.inner_text("#run-status").strip() == "ok"
    # the four hosts did the same: one column for all of them, a cell per task
    assert page.locator("table.matrix th.host-col").all_inner_texts() == ["4 hosts"]
    assert page.locator("table.matrix a.cell").count() == 4
    page.wait_for_timeout(1600)  # let the new rows' highlight fade before the screenshot
    shot(page, dash, "run")
    with httpx.Client(base_url=dash["server"].url) as client:
        bearer = {"Authorization": f"Bearer {dash['tokens']['operator']}"}
        run = client.get(f"/api/runs/{run_id}", headers=bearer).json()
        assert run["run"]["trigger"].startswith("web:operator-1:")
        assert "--check" not in run["run"]["command"]
        assert run["run"]["counts"]["changed"] >= 4
    page.goto(dash["server"].url + f"/hosts/{dash['hosts'][0]}")
    assert "banner" in page.inner_text("body")  # the stage it recorded
    page.context.close()


def test_every_page_renders_and_is_kept_as_a_screenshot(browser: Any, dash: dict[str, Any]) -> None:
    page = logged_in(browser, dash, "operator", viewport={"width": 1280, "height": 800})
    url = dash["server"].url
    for path, name, marker in (
        ("/runs", "runs", "table.runs"),
        ("/alerts", "alerts", "tr.alert"),
        ("/audit", "audit", "table.audit"),
        ("/actions", "actions", "#apply-form"),
    ):
        page.goto(url + path)
        assert page.locator(marker).count() >= 1, path
        shot(page, dash, name)
    page.context.close()


def test_the_overview_fits_a_phone(browser: Any, dash: dict[str, Any]) -> None:
    phone = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 1, "is_mobile": True}
    page = logged_in(browser, dash, "operator", **phone)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    shot(page, dash, "phone-overview")
    page.goto(dash["server"].url + f"/hosts/{dash['hosts'][0]}")
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    shot(page, dash, "phone-host")
    page.context.close()
