"""The server-list text format of the MachineRoom document: parse, load and render it.

One server a line, `server_id--host--user--password--port--ssh_key_path`; `#` starts a comment;
`#name--TYPE--server--user--password` is a tunnel profile. How a line is read:

1. Fields 1-3 (id, host, user) are required and positional.
2. Field 4 is the password, whatever it looks like (empty: none). It is never read by shape,
   because passwords are often all digits or contain `/`, and reading them as a port or a
   key path would both misread the line and risk quoting the password in an error.
3. Every field after the 4th is read by its shape, in any order: empty is skipped; all digits
   is the port (1-65535); `tunnel=NAME` names a tunnel profile; a path (starting with `/`,
   `~` or `.`, or containing `/`) is the SSH key. Two ports, two keys or two tunnels on one
   line, or a field of no known shape, is an error naming the line.

So the document's `kansas-server--203.0.113.100--admin------22--/Users/.../custom_key` (one
empty field too many) is password none, port 22, key `/Users/.../custom_key`, and
`prod-web--192.168.1.100--ubuntu------/Users/.../prod_key` is port 22 (default) with that key.

A tunnel line is a comment whose text splits into at least four fields with a tunnel type
(L2TP/IPSEC, SSH, ...) second: name, type, server, user, password (positional), then port
and key by shape. Passwords: `${NAME}` is an environment variable, `$MACHINEROOM_VAULT;...`
vault ciphertext, anything else plain text (which loads, with a warning).
"""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType

from machineroom.errors import InputError, InputErrors, Location
from machineroom.inventory.model import (
    VAULT_PREFIX,
    Group,
    Host,
    Inventory,
    InventoryWarning,
    Secret,
    TunnelProfile,
    TunnelType,
)
from machineroom.yamlio import read_text

SEPARATOR = "--"
TUNNEL_PREFIX = "tunnel="
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_PORT_RANGE = "an integer 1-65535"


def parse_password(text: str, location: Location | None) -> Secret:
    """A password as written: `${NAME}` env reference, vault ciphertext, or plain text."""
    match = _ENV_REF.match(text)
    if match:
        return Secret("env", match.group(1), location)
    if text.startswith(VAULT_PREFIX):
        return Secret("vault", text, location)
    return Secret("plain", text, location)


def plaintext_warning(owner: str, location: Location | None) -> InventoryWarning:
    """The warning every loader gives for a password written in plain text."""
    return InventoryWarning(
        f"{owner}: plaintext password; write ${{VARIABLE}} (an environment variable) or a "
        "vault value (machineroom vault encrypt-string) instead",
        location,
    )


def _is_path(text: str) -> bool:
    return text.startswith(("/", "~", ".")) or "/" in text


class _Line:
    """One line split into fields, each with its 1-based column (for errors)."""

    def __init__(self, text: str, source: str, number: int, offset: int = 0) -> None:
        self.source = source
        self.number = number
        self.fields: list[tuple[str, int]] = []
        col = offset
        for raw in text.split(SEPARATOR):
            lead = len(raw) - len(raw.lstrip())
            self.fields.append((raw.strip(), col + lead + 1))
            col += len(raw) + len(SEPARATOR)
        self.end = offset + len(text.rstrip()) + 1  # a missing field is "at the end of line"

    def at(self, index: int) -> Location:
        col = self.fields[index][1] if index < len(self.fields) else self.end
        return Location(self.source, self.number, col)

    def text(self, index: int) -> str:
        return self.fields[index][0] if index < len(self.fields) else ""


class _Tail:
    """What the shaped fields after the positional ones said."""

    def __init__(self) -> None:
        self.port: int | None = None
        self.key: str | None = None
        self.tunnel: str | None = None
        self.locations: dict[str, Location] = {}


def _read_tail(line: _Line, start: int, allow_tunnel: bool, errors: list[InputError]) -> _Tail:
    tail = _Tail()
    for index in range(start, len(line.fields)):
        text, where = line.text(index), line.at(index)
        if not text:
            continue
        if text.isdigit():
            name = "port"
            if not 1 <= int(text) <= 65535:
                errors.append(InputError(f"port {text} is out of range", where, _PORT_RANGE))
                continue
        elif allow_tunnel and text.startswith(TUNNEL_PREFIX):
            name = "tunnel"
        elif _is_path(text):
            name = "ssh_key"
        else:
            # the value itself is not quoted: a misplaced password must not be echoed
            errors.append(
                InputError(
                    f"field {index + 1} is neither a port, a key path nor tunnel=NAME",
                    where,
                    "the password as field 4, then a port (1-65535), a key path "
                    "(/..., ~/..., ./...) or tunnel=NAME",
                )
            )
            continue
        if name in tail.locations:
            first = tail.locations[name]
            errors.append(InputError(f"two {name} fields (first at column {first.col})", where))
            continue
        tail.locations[name] = where
        if name == "port":
            tail.port = int(text)
        elif name == "tunnel":
            tail.tunnel = text[len(TUNNEL_PREFIX) :]
        else:
            tail.key = text
    return tail


def _parse_tunnel(line: _Line, errors: list[InputError]) -> TunnelProfile | None:
    name, kind, server = line.text(0), TunnelType.parse(line.text(1)), line.text(2)
    if kind is None:
        return None
    if not name or not server:
        what = "name" if not name else "server"
        errors.append(
            InputError(
                f"tunnel profile without a {what}",
                line.at(0 if not name else 2),
                "#name--TYPE--server--user--password",
            )
        )
        return None
    password = line.text(4)
    tail = _read_tail(line, 5, allow_tunnel=False, errors=errors)
    return TunnelProfile(
        name=name,
        type=kind,
        server=server,
        user=line.text(3) or None,
        password=parse_password(password, line.at(4)) if password else None,
        port=tail.port or 22,
        ssh_key=tail.key,
        location=Location(line.source, line.number),
    )


def _parse_host(line: _Line, errors: list[InputError]) -> Host | None:
    for index, what in enumerate(("server id", "host", "user")):
        if not line.text(index):
            errors.append(
                InputError(
                    f"missing {what} (field {index + 1})",
                    line.at(index),
                    "server_id--host--user--password--port--ssh_key_path",
                )
            )
            return None
    host_id = line.text(0)
    if any(ch.isspace() for ch in host_id):
        errors.append(InputError(f"server id '{host_id}' contains a space", line.at(0)))
        return None
    locations = {"id": line.at(0), "host": line.at(1), "user": line.at(2)}
    password = line.text(3)
    if password:
        locations["password"] = line.at(3)
    tail = _read_tail(line, 4, allow_tunnel=True, errors=errors)
    locations.update(tail.locations)
    return Host(
        id=host_id,
        host=line.text(1),
        user=line.text(2),
        password=parse_password(password, line.at(3)) if password else None,
        port=tail.port or 22,
        ssh_key=tail.key,
        tunnel=tail.tunnel,
        groups=("all",),
        location=Location(line.source, line.number),
        field_locations=MappingProxyType(locations),
    )


def parse_server_list(text: str, source: str) -> Inventory:
    """Parse server-list text (`source` names it in messages) into an Inventory.

    Every problem of the file is reported at once (InputErrors), each naming its line.
    """
    errors: list[InputError] = []
    hosts: dict[str, Host] = {}
    tunnels: dict[str, TunnelProfile] = {}
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            body = stripped[1:]
            line = _Line(body, source, number, offset=raw.index("#") + 1)
            if len(line.fields) < 4 or TunnelType.parse(line.text(1)) is None:
                continue  # an ordinary comment (or a commented-out server)
            profile = _parse_tunnel(line, errors)
            if profile is None:
                continue
            if profile.name in tunnels:
                first = tunnels[profile.name].location
                errors.append(
                    InputError(
                        f"duplicate tunnel profile '{profile.name}' (first at line "
                        f"{first.line if first else '?'})",
                        line.at(0),
                    )
                )
                continue
            tunnels[profile.name] = profile
            continue
        line = _Line(raw, source, number)
        host = _parse_host(line, errors)
        if host is None:
            continue
        if host.id in hosts:
            first_line = hosts[host.id].field_locations["id"].line
            errors.append(
                InputError(
                    f"duplicate server id '{host.id}' (first at line {first_line})",
                    line.at(0),
                    "each server id once",
                )
            )
            continue
        hosts[host.id] = host
    # a host's `tunnel=NAME` is checked by load.check_inventory: the profile may come from
    # another inventory file given with -i
    if errors:
        raise InputErrors(errors)
    warnings = tuple(
        plaintext_warning(f"host '{h.id}'", h.password.location)
        for h in hosts.values()
        if h.password is not None and h.password.kind == "plain"
    ) + tuple(
        plaintext_warning(f"tunnel '{t.name}'", t.password.location)
        for t in tunnels.values()
        if t.password is not None and t.password.kind == "plain"
    )
    return Inventory(
        source=source,
        hosts=MappingProxyType(hosts),
        groups=MappingProxyType({"all": Group("all", hosts=tuple(hosts))}),
        tunnels=MappingProxyType(tunnels),
        warnings=warnings,
    )


def load_server_list(path: str | Path) -> Inventory:
    """Read and parse a server-list file; a missing or unreadable file, one too big or bytes
    that are not UTF-8 text are an InputError (see `yamlio.read_text`)."""
    return parse_server_list(read_text(path), str(path))


def _render_secret(secret: Secret | None) -> str:
    if secret is None:
        return ""
    if secret.kind == "env":
        return f"${{{secret.value}}}"
    return secret.value  # plain stays plain, vault stays ciphertext: what the user had


def _field(value: str, what: str, owner: str) -> str:
    if SEPARATOR in value or "\n" in value or value != value.strip():
        raise InputError(
            f"{owner}: its {what} cannot be written in a server list (it contains '--', a "
            "line break or edge spaces)",
            expected="a YAML inventory (--emit-yaml) for such values",
        )
    return value


def render_server_list(inventory: Inventory) -> str:
    """Server-list text for the inventory's tunnels and hosts; parsing it gives them back.

    Only what the format holds is written (no groups, vars or description). Passwords are
    written as the user had them: env references as `${NAME}`, vault values as ciphertext.
    """
    lines = ["# machineroom server list: server_id--host--user--password--port--ssh_key_path"]
    for tunnel in inventory.tunnels.values():
        owner = f"tunnel '{tunnel.name}'"
        fields = [
            _field(tunnel.name, "name", owner),
            tunnel.type.value,
            _field(tunnel.server, "server", owner),
            _field(tunnel.user or "", "user", owner),
            _field(_render_secret(tunnel.password), "password", owner),
        ]
        if tunnel.port != 22:
            fields.append(str(tunnel.port))
        if tunnel.ssh_key:
            fields.append(_field(_key_text(tunnel.ssh_key), "ssh_key", owner))
        lines.append("#" + SEPARATOR.join(fields))
    for host in inventory.hosts.values():
        owner = f"host '{host.id}'"
        if not host.user:
            raise InputError(f"{owner} has no user; a server list needs one", host.location)
        fields = [
            _field(host.id, "id", owner),
            _field(host.host, "host", owner),
            _field(host.user, "user", owner),
            _field(_render_secret(host.password), "password", owner),
            str(host.port),
        ]
        if host.ssh_key:
            fields.append(_field(_key_text(host.ssh_key), "ssh_key", owner))
        if host.tunnel:
            fields.append(_field(TUNNEL_PREFIX + host.tunnel, "tunnel", owner))
        lines.append(SEPARATOR.join(fields))
    return "\n".join(lines) + "\n"


def _key_text(path: str) -> str:
    # a bare file name would not read as a key by shape; ./ keeps its meaning
    return path if _is_path(path) else f"./{path}"
