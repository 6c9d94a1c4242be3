"""Host keys met by the dashboard's applies, against real SSH hosts (fleet_lab h9-h12), a real
`machineroom serve` and real chromium: the project's known_hosts starts empty, so the first
apply is refused on every host; the action's page shows each key's SHA256 fingerprint as
the server presented it, an admin trusts it there (viewers and operators cannot), a changed
key is never offered, and a rerun connects. `serve --known-hosts` and
`--vault-password-file` reach the runs; the vault password is nowhere the server writes.
"""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_web_browser import ARGS, CHROMIUM, SHOTS, logged_in, shot
from websupport import Server, machineroom, make_token, wait_for

from machineroom.lab import Lab

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")

PASSWORD = "correct-horse-vault-77"
BANNER = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Write the banner
      copy:
        dest: /etc/motd-hostkeys-test
        content: "trusted from the dashboard\\n"
"""
SECRET_PLAY = """\
- hosts: all
  gather_facts: false
  vars_files:
    - ../vars/secret.yml
  tasks:
    - name: Write the secret word
      copy:
        dest: /etc/web-vault-test
        content: "{{ secret_word }}\\n"
"""


def ssh_keygen_fingerprint(lab: Lab, host: str) -> str:
    """The host's ED25519 key's SHA256 fingerprint, as `ssh-keygen -lf` prints it."""
    pub = Path(lab.key).parent / "hosts" / host / "layer/upper/etc/ssh/ssh_host_ed25519_key.pub"
    out = subprocess.run(["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[1]


@pytest.fixture(scope="module")
def dash(fleet_lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A project of hosts h9-h12 whose known_hosts (keys/known_hosts, named in
    machineroom.yml) does not exist yet; `serve --known-hosts` names a file that holds a
    wrong key for h12 (as if it had been reinstalled), and a vault password file."""
    root = tmp_path_factory.mktemp("web-hostkeys")
    home = tmp_path_factory.mktemp("web-hostkeys-home")
    (home / ".ssh").mkdir(mode=0o700)
    hosts = fleet_lab.hosts[8:12]
    lines = ["all:", "  vars:", f"    ssh_key: {fleet_lab.key}", "    user: root", "  hosts:"]
    lines += [f"    {h.name}: {{host: {h.address}}}" for h in hosts]
    (root / "inventory.yml").write_text("\n".join(lines) + "\n")
    (root / "machineroom.yml").write_text("known_hosts: keys/known_hosts\n")
    (root / "playbooks").mkdir()
    (root / "playbooks" / "banner.yml").write_text(BANNER)
    (root / "playbooks" / "secret.yml").write_text(SECRET_PLAY)
    password_file = root / "vault-password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    (root / "vars").mkdir()
    (root / "vars" / "secret.yml").write_text("secret_word: swordfish-42\n")
    env = {"HOME": str(home), "SSH_AUTH_SOCK": ""}
    machineroom(
        "vault",
        "encrypt",
        "--vault-password-file",
        str(password_file),
        "vars/secret.yml",
        cwd=root,
        env=env,
    )
    assert "swordfish" not in (root / "vars" / "secret.yml").read_text()
    # h12 "reinstalled": the extra file holds h11's key under h12's address
    h11_key = next(
        line.split(None, 1)[1]
        for line in Path(fleet_lab.known_hosts).read_text().splitlines()
        if line.split()[0] == hosts[2].address
    )
    (root / "extra_known_hosts").write_text(f"{hosts[3].address} {h11_key}\n")
    state = root / ".machineroom" / "state.db"
    tokens = {r: make_token(root, state, f"{r}-1", r) for r in ("viewer", "operator", "admin")}
    server = Server(
        root,
        state,
        [root / "inventory.yml"],
        env,
        [
            "--known-hosts",
            str(root / "extra_known_hosts"),
            "--vault-password-file",
            str(password_file),
        ],
    )
    shots = Path(SHOTS) if SHOTS else root / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        yield {
            "server": server,
            "tokens": tokens,
            "hosts": [h.name for h in hosts],
            "addresses": [h.address for h in hosts],
            "root": root,
            "state": state,
            "shots": shots,
            "lab": fleet_lab,
        }
    finally:
        server.stop()


def api(dash: dict[str, Any], role: str = "admin") -> httpx.Client:
    """An API client with the role's token."""
    client: httpx.Client = dash["server"].client(dash["tokens"][role])
    return client


def finished(dash: dict[str, Any], action_id: str) -> dict[str, Any]:
    """The action once its run has ended."""
    with api(dash) as client:

        def ended() -> dict[str, Any] | None:
            action: dict[str, Any] = client.get(f"/api/actions/{action_id}").json()
            if action["running"] or not action["run_status"]:
                return None
            return None if action["run_status"] == "running" else action

        result: dict[str, Any] = wait_for(ended, timeout=120)
        return result


def start_apply(dash: dict[str, Any], playbook: str, limit: str | None = None) -> dict[str, Any]:
    """Apply `playbook` (not in check mode) through the API; the action once it ended."""
    with api(dash) as client:
        body: dict[str, Any] = {"playbook": playbook, "check": False}
        if limit:
            body["limit"] = limit
        answer = client.post("/api/actions/apply", json=body)
        assert answer.status_code == 202, answer.text
        return finished(dash, answer.json()["id"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless system chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def refused(dash: dict[str, Any]) -> dict[str, Any]:
    """The first apply: every host's key is refused."""
    action = start_apply(dash, "playbooks/banner.yml")
    assert action["run_status"] == "unreachable"
    return action


def test_the_refused_keys_are_shown_as_the_servers_presented_them(
    dash: dict[str, Any], refused: dict[str, Any]
) -> None:
    keys = {k["host"]: k for k in refused["host_keys"]}
    assert list(keys) == dash["hosts"]  # in the inventory's natural order
    for host in dash["hosts"][:3]:
        assert keys[host]["state"] == "unknown"
        assert keys[host]["fingerprint"] == ssh_keygen_fingerprint(dash["lab"], host)
        assert keys[host]["label"] == "ED25519" and keys[host]["trusted_now"] is False
    h12 = keys[dash["hosts"][3]]
    assert h12["state"] == "changed"  # serve --known-hosts' file was read
    assert h12["fingerprint"] == ssh_keygen_fingerprint(dash["lab"], dash["hosts"][3])
    assert h12["remove"].startswith(f"ssh-keygen -R '{dash['addresses'][3]}' -f ")
    # the run's messages point at the dashboard, not at a CLI flag
    with api(dash) as client:
        run = client.get(f"/api/runs/{refused['run_id']}").json()
    messages = [r["message"] for rs in run["hosts"].values() for r in rs]
    unknown = [m for m in messages if "unknown host key" in m]
    assert len(unknown) == 3
    for message in unknown:
        assert f"/actions/{refused['id']}" in message
        assert "--accept-new-host-keys" not in message
    assert "--accept-new-host-keys" not in refused["output_tail"]
    assert not (dash["root"] / "keys").exists()  # nothing was trusted silently


def test_a_collection_shows_the_key_it_refused_too(dash: dict[str, Any]) -> None:
    h12 = dash["hosts"][3]
    with api(dash, "operator") as client:
        answer = client.post("/api/actions/collect", json={"pattern": h12})
        assert answer.status_code == 202, answer.text
    action = finished(dash, answer.json()["id"])
    assert [(k["host"], k["state"]) for k in action["host_keys"]] == [(h12, "changed")]
    assert action["host_keys"][0]["fingerprint"] == ssh_keygen_fingerprint(dash["lab"], h12)


def test_an_apply_whose_keys_are_refused_stays_on_its_action_page(
    browser: Any, dash: dict[str, Any]
) -> None:
    h12 = dash["hosts"][3]
    page = logged_in(browser, dash, "operator", viewport={"width": 1280, "height": 900})
    page.goto(dash["server"].url + "/actions")
    page.select_option("#playbook", "playbooks/banner.yml")
    page.fill("#limit", h12)
    page.uncheck("#check")
    page.click("#apply-button")
    page.wait_for_selector("#host-keys", timeout=60_000)
    assert "/actions/" in page.url  # not moved on to the run's page
    row = page.locator(f"tr.host-key[data-host={h12}]")
    assert row.get_attribute("data-state") == "changed"
    assert row.locator(".fingerprint").inner_text() == ssh_keygen_fingerprint(dash["lab"], h12)
    assert "HOST KEY CHANGED" in row.inner_text() and row.locator("button").count() == 0
    assert "ended unreachable" in page.inner_text("#action-state")
    page.context.close()


def test_viewers_and_operators_see_the_fingerprints_but_cannot_trust(
    browser: Any, dash: dict[str, Any], refused: dict[str, Any]
) -> None:
    for role in ("viewer", "operator"):
        page = logged_in(browser, dash, role, viewport={"width": 1280, "height": 800})
        page.goto(dash["server"].url + f"/actions/{refused['id']}")
        rows = page.locator("tr.host-key")
        assert rows.count() == 4
        assert page.locator("button.trust").count() == 0
        first = page.locator(f"tr.host-key[data-host={dash['hosts'][0]}]")
        assert first.locator(".fingerprint").inner_text() == ssh_keygen_fingerprint(
            dash["lab"], dash["hosts"][0]
        )
        assert "ask an admin" in first.inner_text()
        csrf = page.get_attribute("meta[name=csrf-token]", "content")
        key = refused["host_keys"][0]
        form = page.request.post(
            dash["server"].url + f"/actions/{refused['id']}/trust",
            form={"csrf": csrf, "host": key["host"], "fingerprint": key["fingerprint"]},
            max_redirects=0,
        )
        assert form.status == 403
        page.context.close()
        with api(dash, role) as client:
            answer = client.post(
                f"/api/actions/{refused['id']}/trust-host-key",
                json={"host": key["host"], "fingerprint": key["fingerprint"]},
            )
        assert answer.status_code == 403
    assert not (dash["root"] / "keys").exists()


def test_an_admin_trusts_the_keys_shown_and_the_rerun_connects(
    browser: Any, dash: dict[str, Any], refused: dict[str, Any]
) -> None:
    page = logged_in(browser, dash, "admin", viewport={"width": 1280, "height": 900})
    page.goto(dash["server"].url + "/actions")
    assert "4 host keys refused" in page.inner_text(f"tr:has(a[href='/actions/{refused['id']}'])")
    page.click(f"a.keys-refused[href='/actions/{refused['id']}#host-keys']")
    page.wait_for_url(f"**/actions/{refused['id']}#host-keys")
    assert page.url.split("#")[0].endswith(f"/actions/{refused['id']}")  # not sent on to the run
    h9, h10, h11, h12 = dash["hosts"]
    # the changed key: a warning, how to remove the old entry, no button
    changed = page.locator(f"tr.host-key[data-host={h12}]")
    assert changed.get_attribute("data-state") == "changed"
    assert changed.locator("button").count() == 0
    assert "HOST KEY CHANGED" in changed.inner_text()
    assert f"ssh-keygen -R '{dash['addresses'][3]}'" in changed.inner_text()
    for host in (h9, h10, h11):
        row = page.locator(f"tr.host-key[data-host={host}]")
        assert row.locator(".fingerprint").inner_text() == ssh_keygen_fingerprint(dash["lab"], host)
        assert row.locator("button.trust").count() == 1
    page.click(f"tr.host-key[data-host={h9}] button.trust")
    page.wait_for_url(lambda url: url.endswith(f"/actions/{refused['id']}?trusted={h9}"))
    assert h9 in page.inner_text("#trusted-note")
    assert "trusted" in page.inner_text(f"tr.host-key[data-host={h9}]")
    shot(page, dash, "host-key-trust")
    known = dash["root"] / "keys" / "known_hosts"
    assert stat.S_IMODE(known.stat().st_mode) == 0o600
    assert stat.S_IMODE(known.parent.stat().st_mode) == 0o700
    lab_lines = Path(dash["lab"].known_hosts).read_text().splitlines()
    assert [line.split() for line in known.read_text().splitlines()] == [
        line.split()[:3] for line in lab_lines if line.split()[0] == dash["addresses"][0]
    ]
    for host in (h10, h11):
        page.click(f"tr.host-key[data-host={host}] button.trust")
        page.wait_for_url(lambda url, host=host: url.endswith(f"?trusted={host}"))
    assert len(known.read_text().splitlines()) == 3
    # the changed key is refused even when asked for directly
    csrf = page.get_attribute("meta[name=csrf-token]", "content")
    fingerprint = page.locator(f"tr.host-key[data-host={h12}] .fingerprint").inner_text()
    form = page.request.post(
        dash["server"].url + f"/actions/{refused['id']}/trust",
        form={"csrf": csrf, "host": h12, "fingerprint": fingerprint},
        max_redirects=0,
    )
    assert form.status == 409
    # and a fingerprint other than the one shown is not trusted
    wrong = page.request.post(
        dash["server"].url + f"/actions/{refused['id']}/trust",
        form={"csrf": csrf, "host": h9, "fingerprint": "SHA256:" + "A" * 43},
        max_redirects=0,
    )
    assert wrong.status == 409
    assert len(known.read_text().splitlines()) == 3
    # audited: who trusted which key for which host
    with api(dash) as client:
        audit = client.get("/api/audit", params={"host": h9}).json()
    assert any(
        "'admin-1' trusted host key" in e["command"] and fingerprint_of(dash, h9) in e["command"]
        for e in audit
    )
    # the rerun, started from the Actions page, connects to the trusted hosts
    page.goto(dash["server"].url + "/actions")
    page.select_option("#playbook", "playbooks/banner.yml")
    page.fill("#limit", f"{h9},{h10},{h11}")
    page.uncheck("#check")
    page.click("#apply-button")
    page.wait_for_url("**/runs/*", timeout=30_000)  # no keys refused: on to its run's page
    page.context.close()
    with api(dash) as client:
        rerun = client.get("/api/actions").json()[0]
    assert rerun["id"] != refused["id"]
    rerun = finished(dash, rerun["id"])
    assert rerun["run_status"] == "ok", rerun["output_tail"]
    assert rerun["host_keys"] == []


def fingerprint_of(dash: dict[str, Any], host: str) -> str:
    return ssh_keygen_fingerprint(dash["lab"], host)


def test_serve_passes_its_vault_password_file_and_never_shows_the_password(
    dash: dict[str, Any], refused: dict[str, Any]
) -> None:
    h9 = dash["hosts"][0]
    with api(dash) as client:  # trusted already when the test above ran: idempotent
        key = next(k for k in refused["host_keys"] if k["host"] == h9)
        answer = client.post(
            f"/api/actions/{refused['id']}/trust-host-key",
            json={"host": h9, "fingerprint": key["fingerprint"]},
        )
        assert answer.status_code == 200, answer.text
    action = start_apply(dash, "playbooks/secret.yml", limit=h9)
    assert action["run_status"] == "ok", action["output_tail"]
    ssh = subprocess.run(
        ["ssh", "-F", dash["lab"].ssh_config, dash["addresses"][0], "cat /etc/web-vault-test"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert ssh.stdout == "swordfish-42\n", ssh.stderr
    state = dash["state"]
    for path in (state, Path(f"{state}-wal"), dash["server"].log):
        if path.exists():
            assert PASSWORD.encode() not in path.read_bytes(), path
    assert PASSWORD not in action["output_tail"]
    with api(dash) as client:
        run = client.get(f"/api/runs/{action['run_id']}").text
        page = client.get(f"/actions/{action['id']}").text
    assert PASSWORD not in run and PASSWORD not in page
