"""Host keys met by the dashboard's applies, against real SSH hosts (fleet_lab h9-h12), a real
`machineroom serve` and real chromium: the project's known_hosts starts empty, so the first
apply is refused on every host; the action's page shows each key's SHA256 fingerprint as
the server presented it, an admin trusts it there (viewers and operators cannot), a changed
key is never offered, and a rerun connects. `serve --known-hosts` and
`--vault-password-file` reach the runs; the vault password is nowhere the server writes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_web_browser import CHROMIUM, SHOTS, logged_in, shot
from websupport import Server, machineroom, make_token, wait_for

from machineroom.cluster.payload import append_host_keys
from machineroom.connection.hostkeys import KnownHosts, parse_known_hosts
from machineroom.errors import InputError
from machineroom.inventory.model import Host, Inventory
from machineroom.lab import Lab
from machineroom.runs.hostkeys import key_blob, trust_host_key
from machineroom.state import open_state
from machineroom.web.errors import ApiError
from machineroom.web.hostkeys import HostKeySettings, trust_offered_key

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
            "home": home,
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
    assert h12["remove"].startswith(f"ssh-keygen -R {dash['addresses'][3]} -f ")
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
    known = dash["root"] / "keys" / "known_hosts"
    for address in dash["addresses"]:  # nothing was trusted silently
        assert not known.exists() or address not in known.read_text()


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
    known = dash["root"] / "keys" / "known_hosts"
    before = known.read_bytes() if known.exists() else None
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
    assert (known.read_bytes() if known.exists() else None) == before


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
    assert f"ssh-keygen -R {dash['addresses'][3]} -f " in changed.inner_text()
    for host in (h9, h10, h11):
        row = page.locator(f"tr.host-key[data-host={host}]")
        assert row.locator(".fingerprint").inner_text() == ssh_keygen_fingerprint(dash["lab"], host)
        assert row.locator("button.trust").count() == 1
    # an admin's cookie is not enough: the form's CSRF token, from this origin
    known = dash["root"] / "keys" / "known_hosts"
    csrf = page.get_attribute("meta[name=csrf-token]", "content")
    key9 = next(k for k in refused["host_keys"] if k["host"] == h9)
    trust_url = dash["server"].url + f"/actions/{refused['id']}/trust"
    for form, headers in (
        ({"host": h9, "fingerprint": key9["fingerprint"]}, {}),
        ({"csrf": "x" * 43, "host": h9, "fingerprint": key9["fingerprint"]}, {}),
        (
            {"csrf": csrf, "host": h9, "fingerprint": key9["fingerprint"]},
            {"Origin": "http://attacker.example"},
        ),
    ):
        forged = page.request.post(trust_url, form=form, headers=headers, max_redirects=0)
        assert forged.status == 403, (form, headers)
    assert not known.exists()
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
    # someone added an entry by hand and left no newline after it: it stays, h10's follows
    other = "other.example " + " ".join(lab_lines[0].split()[1:3])
    known.write_text(known.read_text() + other)
    page.click(f"tr.host-key[data-host={h10}] button.trust")
    page.wait_for_url(lambda url: url.endswith(f"?trusted={h10}"))
    lines = known.read_text().splitlines()
    assert [line.split()[0] for line in lines] == [
        dash["addresses"][0],
        "other.example",
        dash["addresses"][1],
    ]
    # another key for h11 in a file the runs read too (the server's ~/.ssh/known_hosts,
    # written since the run): a changed key now, not trusted, with the line that removes it
    user_file = dash["home"] / ".ssh" / "known_hosts"
    user_file.write_text(f"{dash['addresses'][2]} {' '.join(lab_lines[0].split()[1:3])}\n")
    key11 = next(k for k in refused["host_keys"] if k["host"] == h11)
    with api(dash) as client:
        answer = client.post(
            f"/api/actions/{refused['id']}/trust-host-key",
            json={"host": h11, "fingerprint": key11["fingerprint"]},
        )
    assert answer.status_code == 409, answer.text
    assert "HOST KEY CHANGED" in answer.text
    assert f"ssh-keygen -R {dash['addresses'][2]} -f ~/.ssh/known_hosts" in answer.text
    assert len(known.read_text().splitlines()) == 3
    user_file.unlink()
    page.click(f"tr.host-key[data-host={h11}] button.trust")
    page.wait_for_url(lambda url: url.endswith(f"?trusted={h11}"))
    assert len(known.read_text().splitlines()) == 4
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
    assert len(known.read_text().splitlines()) == 4
    # audited as a dashboard action: who trusted which key, nothing sent to the host
    with api(dash) as client:
        audit = client.get("/api/audit", params={"host": h9}).json()
    trusts = [e for e in audit if e["action"].startswith("trust host key")]
    assert len(trusts) == 1, audit
    assert trusts[0]["action"].startswith(f"trust host key ssh-ed25519 {fingerprint_of(dash, h9)}")
    assert "'admin-1'" in trusts[0]["action"]
    assert trusts[0]["command"] == "" and trusts[0]["exit_code"] is None
    assert trusts[0]["run_id"] == refused["run_id"]
    page.goto(dash["server"].url + f"/audit?host={h9}")
    row = page.locator(f"tr.audit-row[data-id='{trusts[0]['id']}']")
    assert "nothing was sent to the host" in row.inner_text()
    assert row.locator("details.sent").count() == 0
    history = machineroom(
        "history", str(refused["run_id"]), "--state", str(dash["state"]), cwd=dash["root"]
    )
    trusted = [x.split()[:3] for x in history.splitlines() if "trust host key" in x]
    assert sorted(trusted) == [[h, "exit", "-"] for h in sorted((h10, h11, h9))]
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
    known = dash["root"] / "keys" / "known_hosts"
    with api(dash) as client:  # trusted once, then again: the second adds nothing
        key = next(k for k in refused["host_keys"] if k["host"] == h9)
        for _ in range(2):
            count = len(known.read_text().splitlines()) if known.exists() else 0
            answer = client.post(
                f"/api/actions/{refused['id']}/trust-host-key",
                json={"host": h9, "fingerprint": key["fingerprint"]},
            )
            assert answer.status_code == 200, answer.text
        assert answer.json()["added"] is False
        assert len(known.read_text().splitlines()) == count
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


# -- the known_hosts file itself: real files, checked with OpenSSH's ssh-keygen ---------------


def lab_key(lab: Lab, address: str) -> tuple[str, str]:
    """The lab host's key as its known_hosts line has it: (type, base64)."""
    for line in Path(lab.known_hosts).read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == address:
            return fields[1], fields[2]
    raise AssertionError(f"no key for {address} in the lab's known_hosts")


def keygen_finds(known: Path, name: str) -> list[str]:
    """The key lines `ssh-keygen -F NAME -f FILE` finds (OpenSSH's own reading)."""
    out = subprocess.run(
        ["ssh-keygen", "-F", name, "-f", str(known)], capture_output=True, text=True
    )
    return [x for x in out.stdout.splitlines() if x and not x.startswith("#")]


def test_a_key_added_after_a_last_line_without_newline_keeps_both(
    fleet_lab: Lab, tmp_path: Path
) -> None:
    (a, b) = (fleet_lab.hosts[8].address, fleet_lab.hosts[9].address)
    type_a, key_a = lab_key(fleet_lab, a)
    type_b, key_b = lab_key(fleet_lab, b)
    # "Trust this key"
    known = tmp_path / "known_hosts"
    known.write_text(f"{a} {type_a} {key_a}")  # as an editor may leave it
    assert trust_host_key(str(known), b, type_b, key_b) is True
    assert known.read_text() == f"{a} {type_a} {key_a}\n{b} {type_b} {key_b}\n"
    assert len(keygen_finds(known, a)) == 1 and len(keygen_finds(known, b)) == 1
    # --accept-new-host-keys records through the same append
    accepted = tmp_path / "accepted"
    accepted.write_text(f"{a} {type_a} {key_a}")
    checker = KnownHosts([str(accepted)], record_to=str(accepted), accept_new=True)
    checker.check("h10", b, type_b, key_blob(key_b))
    entries = parse_known_hosts(accepted.read_text(), str(accepted))
    assert [(e.patterns, e.key_type) for e in entries] == [(a, type_a), (b, type_b)]
    # and a cluster run's controller adding what its workers accepted
    gathered = tmp_path / "gathered"
    gathered.write_text(f"{a} {type_a} {key_a}")
    append_host_keys(str(gathered), f"{b} {type_b} {key_b}\n")
    assert len(keygen_finds(gathered, a)) == 1 and len(keygen_finds(gathered, b)) == 1


def test_a_key_is_written_hashed_when_the_file_is(fleet_lab: Lab, tmp_path: Path) -> None:
    a, b = fleet_lab.hosts[8].address, fleet_lab.hosts[9].address
    type_a, key_a = lab_key(fleet_lab, a)
    type_b, key_b = lab_key(fleet_lab, b)
    known = tmp_path / "known_hosts"
    known.write_text(f"{a} {type_a} {key_a}\n")
    subprocess.run(["ssh-keygen", "-H", "-f", str(known)], capture_output=True, check=True)
    assert trust_host_key(str(known), b, type_b, key_b) is True
    lines = known.read_text().splitlines()
    assert len(lines) == 2 and all(line.startswith("|1|") for line in lines)
    assert b not in known.read_text()
    assert len(keygen_finds(known, b)) == 1  # OpenSSH finds it by its hash
    assert trust_host_key(str(known), b, type_b, key_b) is False  # known now, hashed or not


@pytest.mark.parametrize(
    "name",
    [
        "web1\n* ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE",
        "*",
        "@cert-authority *.example",
        "web1,web2",
        "!web1",
        "web?",
        "|1|c2FsdA==|aGFzaA==",
        "#web1",
        "web 1",
        "-oProxyCommand=x",
        "[web1]:99999",
        "",
    ],
)
def test_a_crafted_name_is_never_written(fleet_lab: Lab, tmp_path: Path, name: str) -> None:
    key_type, key = lab_key(fleet_lab, fleet_lab.hosts[8].address)
    known = tmp_path / "known_hosts"
    known.write_text("")
    with pytest.raises(InputError, match="not a host name for known_hosts"):
        trust_host_key(str(known), name, key_type, key)
    assert known.read_text() == ""


def test_the_key_type_is_the_keys_own(fleet_lab: Lab, tmp_path: Path) -> None:
    key_type, key = lab_key(fleet_lab, fleet_lab.hosts[8].address)
    assert key_type == "ssh-ed25519"
    known = tmp_path / "known_hosts"
    with pytest.raises(InputError, match="ssh-ed25519 key, not ssh-rsa"):
        trust_host_key(str(known), "web1", "ssh-rsa", key)
    with pytest.raises(InputError, match="not an SSH host key"):
        trust_host_key(str(known), "web1", "ssh-ed25519", "AAAAB3h5eg==")
    assert not known.exists()


def recorded_run(tmp_path: Path, offered: dict[str, str]) -> tuple[Any, Any]:
    """A real state database holding one ended apply that refused `offered`."""
    store = open_state(tmp_path / ".machineroom" / "state.db")
    run_id = store.start_run("apply", "machineroom apply site.yml")
    store.finish_run(run_id, "unreachable", {"host_keys": [offered]})
    return store, store.run(run_id)


def test_a_host_on_another_port_is_trusted_as_host_port(fleet_lab: Lab, tmp_path: Path) -> None:
    address = fleet_lab.hosts[8].address
    key_type, key = lab_key(fleet_lab, address)
    blob = key_blob(key)
    from machineroom.connection.hostkeys import fingerprint, offered_key

    offered = {"host": "web1", **offered_key(f"[{address}]:2222", key_type, blob, "unknown")}
    store, run = recorded_run(tmp_path, offered)
    known = tmp_path / "keys" / "known_hosts"
    settings = HostKeySettings(str(known))
    inventory = Inventory("inventory.yml", {"web1": Host(id="web1", host=address, port=2222)}, {})
    done = trust_offered_key(store, run, settings, "web1", fingerprint(blob), "admin-1", inventory)
    assert done["added"] is True and done["name"] == f"[{address}]:2222"
    assert known.read_text() == f"[{address}]:2222 {key_type} {key}\n"
    assert len(keygen_finds(known, f"[{address}]:2222")) == 1
    assert keygen_finds(known, address) == []  # not port 22's
    # the inventory moved the host to port 22 since: the recorded name is not its own now
    moved = Inventory("inventory.yml", {"web1": Host(id="web1", host=address)}, {})
    known.unlink()
    with pytest.raises(ApiError) as refused:
        trust_offered_key(store, run, settings, "web1", fingerprint(blob), "admin-1", moved)
    assert refused.value.status == 422
    assert f"connects to {address} now" in str(refused.value)
    assert not known.exists()
    store.close()


def test_a_crafted_name_recorded_in_a_run_is_refused(fleet_lab: Lab, tmp_path: Path) -> None:
    address = fleet_lab.hosts[8].address
    key_type, key = lab_key(fleet_lab, address)
    from machineroom.connection.hostkeys import fingerprint, offered_key

    blob = key_blob(key)
    crafted = f"{address}\n* {key_type} {key}"
    offered = {"host": "web1", **offered_key(crafted, key_type, blob, "unknown")}
    store, run = recorded_run(tmp_path, offered)
    known = tmp_path / "keys" / "known_hosts"
    inventory = Inventory("inventory.yml", {"web1": Host(id="web1", host=address)}, {})
    with pytest.raises(ApiError) as refused:
        trust_offered_key(
            store, run, HostKeySettings(str(known)), "web1", fingerprint(blob), "a", inventory
        )
    assert refused.value.status == 422
    assert not known.exists()
    assert store.audit(run_id=run.id) == []
    store.close()


# -- a dashboard run walked on a Dask cluster's worker -----------------------------------------

ADVICE = "ADVICE-FROM-THE-DASHBOARD: trust it on /actions/x"


def test_a_dashboard_run_through_a_cluster_names_the_page_and_the_controllers_file(
    fleet_lab: Lab, tmp_path: Path
) -> None:
    """The run as the dashboard starts it (a RunRequest on `run-request`'s stdin, the project's
    settings read there: machineroom.yml names the cluster): the worker's messages give the
    dashboard's advice, and a changed key's entry is the controller's file, not the worker's
    deleted copy."""
    from dasklab import start_dask

    from machineroom.runs.connect import ConnectSettings
    from machineroom.runs.request import RunRequest

    changed, unknown = fleet_lab.hosts[8], fleet_lab.hosts[9]
    lines = ["all:", "  vars:", f"    ssh_key: {fleet_lab.key}", "    user: root", "  hosts:"]
    lines += [f"    {h.name}: {{host: {h.address}}}" for h in (changed, unknown)]
    (tmp_path / "inventory.yml").write_text("\n".join(lines) + "\n")
    (tmp_path / "site.yml").write_text(BANNER)
    known = tmp_path / ".machineroom" / "known_hosts"
    known.parent.mkdir(mode=0o700)
    other_type, other_key = lab_key(fleet_lab, fleet_lab.hosts[10].address)
    known.write_text(f"{changed.address} {other_type} {other_key}\n")  # "reinstalled"
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    dask = start_dask(tmp_path / "dask")
    try:
        dask.start_worker("w1")
        (tmp_path / "machineroom.yml").write_text(f"cluster: {dask.address}\n" + dask.settings())
        request = RunRequest(
            kind="apply",
            target="site.yml",
            inventory_paths=(str(tmp_path / "inventory.yml"),),
            connect=ConnectSettings(unknown_key_advice=ADVICE),
            connect_from_settings=True,
            trigger="web:admin-1:cluster",
        )
        done = subprocess.run(
            [sys.executable, "-m", "machineroom", "run-request", "-"],
            input=request.to_json(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            env={**os.environ, "HOME": str(home), "SSH_AUTH_SOCK": ""},
        )
    finally:
        dask.stop()
    assert done.returncode == 3, done.stdout + done.stderr
    assert "--accept-new-host-keys" not in done.stdout + done.stderr
    with contextlib.closing(sqlite3.connect(tmp_path / ".machineroom" / "state.db")) as db:
        (summary,) = db.execute("SELECT summary FROM runs").fetchone()
        messages = [m for (m,) in db.execute("SELECT message FROM task_results")]
    keys = {k["host"]: k for k in json.loads(summary)["host_keys"]}
    assert keys[unknown.name]["state"] == "unknown"
    assert keys[changed.name]["state"] == "changed"
    assert keys[changed.name]["known_file"] == str(known)
    assert keys[changed.name]["known_at"] == f"{known}:1"
    assert any(ADVICE in m for m in messages), messages
    assert any(f"-f {known}" in m for m in messages), messages
    assert not any("mr-shard-" in m for m in messages), messages
