"""The secrets registry and terminal escaping as pure logic (the end-to-end checks are in
test_secrets.py)."""

from __future__ import annotations

import base64
import io
import json
import shlex
import urllib.parse

import pytest

from machineroom.events import EventBus, TaskFinished
from machineroom.masking import MASK, MaskingWriter, SecretRegistry, is_secret_name
from machineroom.report.terminal import visible


@pytest.mark.parametrize(
    "name",
    ["password", "db_password", "apiToken", "AWS_SECRET_ACCESS_KEY", "ssh-key", "become_pass"],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    ["passenger", "keycloak_url", "monkey", "user", "port", "auth_enabled", "pass_through",
     "pw_min", "key_name"],
)  # fmt: skip
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


def test_derived_forms_are_masked() -> None:
    secret = "s3cr'et/pw Ä"
    registry = SecretRegistry()
    registry.add(secret)
    forms = [
        secret,
        secret.upper(),
        secret.lower(),
        base64.b64encode(secret.encode()).decode(),
        base64.b64encode((secret + "\n").encode()).decode(),
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        shlex.quote(secret),
        json.dumps(secret)[1:-1],
    ]
    for form in forms:
        assert registry.text(f"before {form} after") == f"before {MASK} after", form


def test_longest_first_and_values_too_short_to_mask_are_ignored() -> None:
    registry = SecretRegistry()
    registry.add("ok")  # would hide every status word; protects nothing
    registry.add("abcd")
    registry.add("abcdefgh")
    assert registry.text("abcdefgh abcd ABCD ok") == f"{MASK} {MASK} {MASK} ok"


def test_identity_fields_of_events_are_never_masked() -> None:
    registry = SecretRegistry()
    registry.add("web1")  # a password that is also a host's name
    event = registry.event(TaskFinished("web1", "t1", "task", "s", "ok", msg="on web1"))
    assert event.host == "web1" and event.msg == f"on {MASK}"


def test_the_output_guard_leaves_short_forms_to_the_structured_paths() -> None:
    registry = SecretRegistry()
    registry.add("1234")
    document = json.dumps(registry.data({"duration": 1234.5, "stdout": "pin 1234"}))
    assert registry.guard_text(document) == document  # still valid JSON
    assert json.loads(document) == {"duration": 1234.5, "stdout": f"pin {MASK}"}
    registry.add("long-secret-1")
    assert registry.guard_text("x long-secret-1 y") == f"x {MASK} y"


def test_data_masks_keys_values_and_nested() -> None:
    registry = SecretRegistry()
    registry.add("hunter22")
    data = {"hunter22": ["x hunter22", {"k": "HUNTER22"}], "n": 3}
    assert registry.data(data) == {MASK: [f"x {MASK}", {"k": MASK}], "n": 3}


def test_event_bus_masks_before_any_subscriber() -> None:
    registry = SecretRegistry()
    registry.add("hunter22")
    seen: list[object] = []
    bus = EventBus([seen.append], secrets=registry)
    bus.emit(
        TaskFinished("h", "t1", "task", "s", "ok", msg="pw hunter22", result={"stdout": "hunter22"})
    )
    event = seen[0]
    assert isinstance(event, TaskFinished)
    assert event.msg == f"pw {MASK}" and event.result == {"stdout": MASK}


def test_masking_writer_masks_text_and_passes_bytes_to_buffer() -> None:
    from machineroom.masking import SECRETS

    SECRETS.add("writer-secret-1")
    raw = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    writer = MaskingWriter(raw)
    writer.write("a writer-secret-1 b\n")
    writer.flush()
    assert raw.buffer.getvalue() == f"a {MASK} b\n".encode()  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        writer.write(b"bytes")  # click tells binary from text streams this way


def test_visible_escapes_controls_but_keeps_lines() -> None:
    assert visible("a\x1b[2Jb\tc\r\nd\re\x07\x9b") == "a\\x1b[2Jb\tc\nd\\x0de\\x07\\x9b"
    assert visible("plain text\n") == "plain text\n"
    # a line cannot be made to read backwards or hide a part of it
    assert visible("ok\u202e1 deliat\u200b") == "ok\\u202e1 deliat\\u200b"
