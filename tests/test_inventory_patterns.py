"""Host patterns as Ansible users write them."""

from __future__ import annotations

from pathlib import Path

import pytest

from machineroom.errors import InputError
from machineroom.inventory import Inventory, load_inventory, select_hosts
from machineroom.inventory.patterns import split_pattern

ANSIBLE = Path(__file__).parent / "data" / "inventory" / "ansible" / "hosts.yml"


@pytest.fixture(scope="module")
def inventory() -> Inventory:
    return load_inventory(ANSIBLE)


def ids(inventory: Inventory, pattern: str) -> list[str]:
    return [h.id for h in select_hosts(inventory, pattern)]


APPS = ["app01.example.com", "app02.example.com", "app03.example.com"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("web1", ["web1"]),
        ("web", ["web1", "web2"]),
        ("prod", ["web1", "web2", "db1"]),  # a group includes its children's hosts
        ("all", ["lonely", "web1", "web2", "db1", *APPS]),
        ("*", ["lonely", "web1", "web2", "db1", *APPS]),
        ("app0*", APPS),
        ("web*", ["web1", "web2"]),
        ("d*", ["db1"]),  # the glob matches group db and host db1: db1 once
        ("db:web", ["web1", "web2", "db1"]),  # inventory order, not pattern order
        ("db,web", ["web1", "web2", "db1"]),
        ("prod:&monitoring", ["web1"]),
        ("prod:!web", ["db1"]),
        ("!web:prod", ["db1"]),  # exclusions apply last whatever their place
        ("all:!prod:!app", ["lonely"]),
        ("!prod", ["lonely", *APPS]),
        ("&web", ["web1", "web2"]),
        ("~web\\d", ["web1", "web2"]),
        ("~app0[12]", APPS[:2]),
        ("web[0]", ["web1"]),
        ("prod[1:2]", ["web2", "db1"]),
        ("prod[-1]", ["db1"]),
        ("ungrouped", ["lonely"]),
        (" web1 , db1 ", ["web1", "db1"]),
    ],
)
def test_patterns(inventory: Inventory, pattern: str, expected: list[str]) -> None:
    assert ids(inventory, pattern) == expected


def test_split() -> None:
    assert split_pattern("a:&b:!c") == ["a", "&b", "!c"]
    assert split_pattern("web[0:2]:db") == ["web[0:2]", "db"]
    assert split_pattern("a,b:c") == ["a", "b:c"]


def test_unknown_name_lists_close_names(inventory: Inventory) -> None:
    with pytest.raises(InputError) as caught:
        select_hosts(inventory, "wbe")
    assert str(caught.value) == (
        "host pattern 'wbe': no host or group 'wbe' (did you mean 'web'?); expected host or "
        "group names, globs (web*), ~regex or all, joined by : or ',' (&name intersects, "
        "!name excludes)"
    )


def test_unknown_name_in_exclusion_is_an_error(inventory: Inventory) -> None:
    # a typo in `!x` would otherwise run on the hosts meant to be left out
    with pytest.raises(InputError, match="no host or group 'web11' \\(did you mean 'web1'"):
        select_hosts(inventory, "all:!web11")


def test_pattern_matching_nothing(inventory: Inventory) -> None:
    with pytest.raises(InputError, match=r"^host pattern 'zz\*' matches no host;"):
        select_hosts(inventory, "zz*")
    with pytest.raises(InputError, match=r"^host pattern 'db:&web' matches no host"):
        select_hosts(inventory, "db:&web")


def test_bad_regex(inventory: Inventory) -> None:
    with pytest.raises(InputError, match="bad regular expression '\\('"):
        select_hosts(inventory, "~(")


def test_empty_pattern(inventory: Inventory) -> None:
    with pytest.raises(InputError, match="empty host pattern"):
        select_hosts(inventory, " : ")
