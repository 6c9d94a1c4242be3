"""The server-list format: the document's examples, the field-shape rule, secrets, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from machineroom.errors import InputError, InputErrors
from machineroom.inventory import (
    TunnelType,
    load_inventory,
    load_server_list,
    parse_server_list,
    render_server_list,
)

DATA = Path(__file__).parent / "data" / "inventory"
INVALID = DATA / "invalid"


def _cases(prefix: str) -> list[str]:
    return sorted(
        p.name
        for p in INVALID.iterdir()
        if p.name.startswith(prefix) and not p.name.endswith(".expected")
    )


def test_document_examples_load_as_meant() -> None:
    inventory = load_server_list(DATA / "document_examples.txt")
    hosts = inventory.hosts
    assert list(hosts) == ["web-server-01", "db-server-01", "kansas-server", "prod-web"]

    web = hosts["web-server-01"]
    assert (web.host, web.user, web.port, web.ssh_key) == ("192.168.1.100", "root", 22, None)
    assert web.password is not None and web.password.reveal() == "password123"

    db = hosts["db-server-01"]
    assert (db.user, db.port) == ("admin", 2222)
    assert db.password is not None and db.password.reveal() == "securepass"

    # one empty field too many: the 22 is the port by its shape, the path the key
    kansas = hosts["kansas-server"]
    assert (kansas.host, kansas.user, kansas.password, kansas.port) == (
        "203.0.113.100",
        "admin",
        None,
        22,
    )
    assert kansas.ssh_key == "/Users/yourusername/.ssh/custom_key"

    prod = hosts["prod-web"]
    assert (prod.user, prod.password, prod.port) == ("ubuntu", None, 22)
    assert prod.ssh_key == "/Users/yourusername/.ssh/prod_key"

    tunnel = inventory.tunnels["tunnel-profile-name"]
    assert tunnel.type is TunnelType.L2TP_IPSEC
    assert (tunnel.server, tunnel.user) == ("tunnel-server", "username")
    assert tunnel.password is not None and tunnel.password.reveal() == "password"
    assert list(inventory.groups) == ["all"]
    assert inventory.groups["all"].hosts == tuple(hosts)


def test_plaintext_passwords_warn_with_their_line() -> None:
    inventory = load_server_list(DATA / "document_examples.txt")
    text = [str(w) for w in inventory.warnings]
    source = str(DATA / "document_examples.txt")
    assert text[0].startswith(f"{source}:4:37: host 'web-server-01': plaintext password;")
    assert [t.split(": ")[1] for t in text] == [
        "host 'web-server-01'",
        "host 'db-server-01'",
        "tunnel 'tunnel-profile-name'",
    ]
    # the warning never quotes the password
    assert not any("password123" in t or "securepass" in t for t in text)


def test_secrets_tunnels_and_shapes() -> None:
    inventory = parse_server_list((DATA / "secrets.txt").read_text(), "secrets.txt")
    assert list(inventory.tunnels) == ["jump", "office"]  # the commented server is a comment
    jump = inventory.tunnels["jump"]
    assert (jump.type, jump.user, jump.password, jump.port, jump.ssh_key) == (
        TunnelType.SSH,
        "jumper",
        None,
        2222,
        "./keys/jump",
    )
    office = inventory.tunnels["office"]
    assert office.type is TunnelType.L2TP_IPSEC
    assert office.password is not None and office.password.reference() == "env:OFFICE_VPN"

    app1, app2, app3 = inventory.hosts.values()
    assert app1.password is not None and app1.password.kind == "env"
    assert app1.password.value == "APP1_PASSWORD" and app1.port == 2201
    assert app2.password is not None and app2.password.kind == "vault"
    assert app2.password.value == "$MACHINEROOM_VAULT;1;c2FsdA==;Y2lwaGVy"
    assert (app2.tunnel, app2.port) == ("jump", 22)
    # field 4 is the password whatever its shape: digits and a slash do not make a key
    assert app3.password is not None and app3.password.reveal() == "12345/abc"
    assert app3.ssh_key is None
    assert [str(w).split(": ")[1] for w in inventory.warnings] == ["host 'app3'"]


def test_env_password_is_read_only_when_revealed(monkeypatch: pytest.MonkeyPatch) -> None:
    inventory = parse_server_list("a--h--u--${A_PASS}\n", "s.txt")
    secret = inventory.hosts["a"].password
    assert secret is not None
    with pytest.raises(InputError, match=r"s.txt:1:10: environment variable A_PASS is not set"):
        secret.reveal()
    monkeypatch.setenv("A_PASS", "hunter2")
    assert secret.reveal() == "hunter2"


@pytest.mark.parametrize("name", ["document_examples.txt", "secrets.txt"])
def test_render_round_trips(name: str) -> None:
    original = parse_server_list((DATA / name).read_text(), name)
    again = parse_server_list(render_server_list(original), name)
    assert list(again.hosts) == list(original.hosts)
    for host_id, host in original.hosts.items():
        other = again.hosts[host_id]
        for attr in ("host", "user", "password", "port", "ssh_key", "tunnel"):
            mine, theirs = getattr(host, attr), getattr(other, attr)
            if attr == "password" and mine is not None:
                assert (mine.kind, mine.value) == (theirs.kind, theirs.value)
            else:
                assert mine == theirs, (host_id, attr)
    assert {n: (t.type, t.server, t.port, t.ssh_key) for n, t in original.tunnels.items()} == {
        n: (t.type, t.server, t.port, t.ssh_key) for n, t in again.tunnels.items()
    }


def test_render_writes_secrets_as_the_user_had_them() -> None:
    text = render_server_list(parse_server_list((DATA / "secrets.txt").read_text(), "s"))
    assert "app1--10.0.0.11--deploy--${APP1_PASSWORD}--2201" in text
    assert (
        "app2--10.0.0.12--deploy--$MACHINEROOM_VAULT;1;c2FsdA==;Y2lwaGVy--22--tunnel=jump" in text
    )
    assert "#office--L2TP/IPSEC--vpn.example.com--me--${OFFICE_VPN}" in text


def test_comment_and_blank_lines_only() -> None:
    inventory = parse_server_list("\n# nothing--here\n   \n#x--NOT-A-TYPE--s--u--p\n", "s")
    assert not inventory.hosts and not inventory.tunnels


def test_existing_key_file_passes(tmp_path: Path) -> None:
    key = tmp_path / "id_test"
    key.write_text("key")
    servers = tmp_path / "servers.txt"
    servers.write_text(f"web1--10.0.0.1--root----22--{key}\n")
    assert load_inventory(servers).hosts["web1"].ssh_key == str(key)


def test_folder_with_servers_txt(tmp_path: Path) -> None:
    (tmp_path / "servers.txt").write_text("web1--10.0.0.1--root\n")
    assert list(load_inventory(tmp_path).hosts) == ["web1"]


def test_many_errors_are_reported_together() -> None:
    text = "a--h--u----0\nb--h\na--h--u\n"
    with pytest.raises(InputErrors) as caught:
        parse_server_list(text, "s.txt")
    assert [e.location.line for e in caught.value.errors if e.location] == [1, 2, 3]


@pytest.mark.parametrize("name", _cases("sl_"))
def test_invalid_server_list(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(INVALID)
    expected = (INVALID / name).with_suffix(".expected").read_text().rstrip("\n")
    with pytest.raises(InputError) as caught:
        load_inventory(name)
    assert str(caught.value) == expected
