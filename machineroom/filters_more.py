"""More of ansible.builtin's filters and tests: combinatorics, seeded randomness, password
hashes, UUIDs, dates, URLs and paths on the workstation.

Kept apart from `filters.py` (the everyday ones) so each file stays readable; `filters.py`
merges `FILTERS` and `TESTS` from here. Results follow ansible-core's filters of the same name.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import math
import os
import random as _random
import re
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import Environment
from jinja2.exceptions import FilterArgumentError
from jinja2.utils import pass_environment

# ansible-core's namespace for `to_uuid`
UUID_NAMESPACE_ANSIBLE = uuid.UUID("361E6D51-FAEC-444A-9079-341386DA8E2E")

# --- lists -----------------------------------------------------------------------------------


def subelements(value: Any, path: Any, skip_missing: bool = False) -> list[list[Any]]:
    """`users | subelements('groups')`: `[user, group]` for every group of every user.

    `path` may be dotted (`'a.b'`) or a list of keys; a user without the key is an error
    unless `skip_missing=True`.
    """
    if isinstance(value, Mapping):
        elements = list(value.values())
    elif isinstance(value, list):
        elements = list(value)
    else:
        raise FilterArgumentError("subelements: expected a list of mappings or a mapping")
    keys = path.split(".") if isinstance(path, str) else list(path)
    pairs: list[list[Any]] = []
    for element in elements:
        found: Any = element
        for key in keys:
            if not isinstance(found, Mapping):
                raise FilterArgumentError(f"subelements: '{key}' should point to a mapping")
            if key not in found:
                if skip_missing:
                    found = []
                    break
                raise FilterArgumentError(f"subelements: no key '{key}' in item {found!r}")
            found = found[key]
        if not isinstance(found, list):
            raise FilterArgumentError(f"subelements: '{path}' should be a list, got {found!r}")
        pairs.extend([element, item] for item in found)
    return pairs


def product(*lists: Iterable[Any], repeat: int = 1) -> list[list[Any]]:
    """The cartesian product: `[1, 2] | product(['a'])` → `[[1, 'a'], [2, 'a']]`."""
    return [list(t) for t in itertools.product(*lists, repeat=repeat)]


def permutations(value: Iterable[Any], r: int | None = None) -> list[list[Any]]:
    """Every ordering of `r` items (all of them by default)."""
    return [list(t) for t in itertools.permutations(value, r)]


def combinations(value: Iterable[Any], r: int) -> list[list[Any]]:
    """Every choice of `r` items, in order."""
    return [list(t) for t in itertools.combinations(value, r)]


@pass_environment
def extract(environment: Environment, item: Any, container: Any, morekeys: Any = None) -> Any:
    """`['a', 'b'] | map('extract', hostvars, 'ansible_host')`: container[item][morekeys...]."""
    keys = [item]
    if morekeys is not None:
        keys += morekeys if isinstance(morekeys, list) else [morekeys]
    value = container
    for key in keys:
        value = environment.getitem(value, key)
    return value


def random(end: Any, start: int | None = None, step: int | None = None, seed: Any = None) -> Any:
    """`60 | random(seed=inventory_hostname)`: a number below end, or an item of a list.

    With a seed the answer is the same every run (as ansible-core's: Python's Random(seed)).
    """
    r: _random.Random = _random.SystemRandom() if seed is None else _random.Random(seed)
    if isinstance(end, int) and not isinstance(end, bool):
        return r.randrange(start or 0, end, step or 1)
    if isinstance(end, Iterable):
        if start or step:
            raise FilterArgumentError("random: start and step are for numbers only")
        return r.choice(list(end))
    raise FilterArgumentError("random: expected a number or a list")


def shuffle(value: Iterable[Any], seed: Any = None) -> list[Any]:
    """The items in a random order (the same order every run with a seed)."""
    items = list(value)
    if seed:
        _random.Random(seed).shuffle(items)
    else:
        _random.SystemRandom().shuffle(items)
    return items


# --- numbers ---------------------------------------------------------------------------------


def log(value: float, base: float = math.e) -> float:
    """Logarithm (natural by default)."""
    return math.log10(value) if base == 10 else math.log(value, base)


def power(value: float, exponent: float) -> float:
    """`x | pow(2)`."""
    return math.pow(value, exponent)


def root(value: float, base: float = 2) -> float:
    """`x | root` (square root) or `x | root(3)`."""
    return math.sqrt(value) if base == 2 else math.pow(value, 1.0 / float(base))


_SIZES = [("Y", 1 << 80), ("Z", 1 << 70), ("E", 1 << 60), ("P", 1 << 50), ("T", 1 << 40)]
_SIZES += [("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1)]
_UNIT_WORDS = {"B": "byte", "K": "kilo", "M": "mega", "G": "giga", "T": "tera", "P": "peta"}
_UNIT_WORDS |= {"E": "exa", "Z": "zeta", "Y": "yotta"}


def human_readable(size: Any, isbits: bool = False, unit: str | None = None) -> str:
    """`1048576 | human_readable` → `1.00 MB` (`isbits` → `Mb`; `unit='K'` forces one)."""
    number = float(size)
    base = "bits" if isbits else "Bytes"
    letter, limit = "B", 1
    for letter, limit in _SIZES:
        if (unit is None and number >= limit) or (unit is not None and unit.upper() == letter):
            break
    suffix = base if limit == 1 else letter + base[0]
    return f"{number / limit:.2f} {suffix}"


def human_to_bytes(value: Any, default_unit: str | None = None, isbits: bool = False) -> int:
    """`'10M' | human_to_bytes` → 10485760 (`KB`, `kilobyte` too; `Mb` with isbits=True)."""
    match = re.fullmatch(r"([0-9]*\.?[0-9]+)(?:\s*([A-Za-z]+))?\s*", str(value))
    if match is None:
        raise FilterArgumentError(f"human_to_bytes: cannot read {value!r} as a size")
    number = float(match.group(1))
    unit = match.group(2) or default_unit
    if unit is None:
        return round(number)
    letter = unit[0].upper()
    limits = dict(_SIZES)
    if letter not in limits:
        raise FilterArgumentError(
            f"human_to_bytes: unknown unit in {value!r} (expected one of {', '.join(limits)})"
        )
    if len(unit) > 1:
        mark = "b" if isbits else "B"
        word = ("" if letter == "B" else _UNIT_WORDS[letter]) + ("bit" if isbits else "byte")
        if unit != letter + mark and unit.lower() != word and not (letter == "B" and unit == word):
            raise FilterArgumentError(
                f"human_to_bytes: {value!r}: expected {letter}{mark} or {letter}"
                if letter != "B"
                else f"human_to_bytes: {value!r}: expected {mark} or {word}"
            )
    return round(number * limits[letter])


# --- identifiers, hashes ---------------------------------------------------------------------


def to_uuid(value: Any, namespace: Any = UUID_NAMESPACE_ANSIBLE) -> str:
    """A name-based (v5) UUID, in Ansible's namespace unless another is given."""
    space = namespace if isinstance(namespace, uuid.UUID) else uuid.UUID(str(namespace))
    return str(uuid.uuid5(space, str(value)))


_CRYPT64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
# byte order of the final encoding (Drepper's SHA-crypt specification)
_ORDER_256 = [(0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14)]
_ORDER_256 += [(15, 25, 5), (6, 16, 26), (27, 7, 17), (18, 28, 8), (9, 19, 29)]


def _rotate_512(i: int) -> tuple[int, int, int]:
    # positions cycle a, b, c → b, c, a → c, a, b over the 21 groups
    a, b, c = i, i + 21, i + 42
    return ((a, b, c), (b, c, a), (c, a, b))[i % 3]


def _encode(digest: bytes, order: list[tuple[int, int, int]], tail: list[int]) -> str:
    out: list[str] = []
    for first, second, third in order:
        word = (digest[first] << 16) | (digest[second] << 8) | digest[third]
        out.extend(_CRYPT64[(word >> (6 * k)) & 63] for k in range(4))
    word = 0
    for index in tail:
        word = (word << 8) | digest[index]
    out.extend(_CRYPT64[(word >> (6 * k)) & 63] for k in range((len(tail) * 8 + 5) // 6))
    return "".join(out)


def sha_crypt(password: str, salt: str, rounds: int | None, bits: int = 512) -> str:
    """SHA-256/512-crypt (`$5$`/`$6$`) as glibc's crypt() computes it, in pure Python."""
    new: Callable[..., Any] = hashlib.sha512 if bits == 512 else hashlib.sha256
    size = 64 if bits == 512 else 32
    p, s = password.encode(), salt.encode()[:16]
    n = 5000 if rounds is None else min(max(int(rounds), 1000), 999_999_999)

    def stretch(block: bytes, length: int) -> bytes:
        return block * (length // size) + block[: length % size]

    b = new(p + s + p).digest()
    a = new(p + s + stretch(b, len(p)))
    i = len(p)
    while i:
        a.update(b if i & 1 else p)
        i >>= 1
    c = a.digest()
    ps = stretch(new(p * len(p)).digest(), len(p))
    ss = stretch(new(s * (16 + c[0])).digest(), len(s))
    for r in range(n):
        h = new(ps if r & 1 else c)
        if r % 3:
            h.update(ss)
        if r % 7:
            h.update(ps)
        h.update(c if r & 1 else ps)
        c = h.digest()
    if bits == 512:
        encoded = _encode(c, [_rotate_512(i) for i in range(21)], [63])
    else:
        encoded = _encode(c, _ORDER_256, [31, 30])
    ident = "6" if bits == 512 else "5"
    spec = f"rounds={n}$" if rounds is not None else ""
    return f"${ident}${spec}{s.decode()}${encoded}"


# ansible-core (through passlib) writes these rounds when none are given
_IMPLICIT_ROUNDS = {512: 656000, 256: 535000}


def password_hash(
    password: Any,
    hashtype: str = "sha512",
    salt: str | None = None,
    salt_size: int | None = None,
    rounds: int | None = None,
) -> str:
    """`'secret' | password_hash('sha512', 'somesalt')`: a crypt(3) hash for /etc/shadow.

    sha512 and sha256 (also as sha512_crypt, sha256_crypt). Without `salt` a random one is
    drawn, so the hash changes every run (as in Ansible); give a salt to stay idempotent.
    """
    kinds = {"sha512": 512, "sha512_crypt": 512, "sha256": 256, "sha256_crypt": 256}
    if hashtype not in kinds:
        raise FilterArgumentError(
            f"password_hash: unsupported hash type {hashtype!r} (expected sha512 or sha256)"
        )
    bits = kinds[hashtype]
    if salt is None:
        salt = "".join(secrets.choice(_CRYPT64) for _ in range(salt_size or 16))
    elif any(ch not in _CRYPT64 for ch in str(salt)):
        raise FilterArgumentError("password_hash: a salt holds only [./0-9A-Za-z]")
    # passlib (behind Ansible's filter) leaves the default 5000 rounds unwritten
    n = rounds or _IMPLICIT_ROUNDS[bits]
    return sha_crypt(str(password), str(salt), None if n == 5000 else n, bits)


# --- dates, URLs, paths ----------------------------------------------------------------------


def strftime(fmt: str, second: Any = None, utc: bool = False) -> str:
    """`'%Y-%m-%d' | strftime`: now (or epoch `second`) formatted, local time unless utc."""
    when = None if second is None else float(second)
    return time.strftime(fmt, time.gmtime(when) if utc else time.localtime(when))


def to_datetime(value: Any, fmt: str = "%Y-%m-%d %H:%M:%S") -> datetime.datetime:
    """Parse a date: `(('2024-01-02 00:00:00' | to_datetime) - (b | to_datetime)).days`."""
    return datetime.datetime.strptime(str(value), fmt)


def urlsplit(value: Any, query: str = "") -> Any:
    """The parts of a URL as a mapping, or the one part named (`'hostname'`, `'port'`, ...)."""
    parts = urllib.parse.urlsplit(str(value))
    found = {
        "fragment": parts.fragment,
        "hostname": parts.hostname,
        "netloc": parts.netloc,
        "password": parts.password,
        "path": parts.path,
        "port": parts.port,
        "query": parts.query,
        "scheme": parts.scheme,
        "username": parts.username,
    }
    if not query:
        return found
    if query not in found:
        raise FilterArgumentError(f"urlsplit: unknown part {query!r}")
    return found[query]


def path_join(parts: Any) -> str:
    """`['/etc', 'app', 'a.conf'] | path_join` → `/etc/app/a.conf`."""
    if isinstance(parts, str):
        return parts
    return os.path.join(*[str(p) for p in parts])


def normpath(path: Any) -> str:
    """`a//b/../c` → `a/c`."""
    return os.path.normpath(str(path))


def expandvars(path: Any) -> str:
    """`$HOME/x` with the workstation's environment variables expanded."""
    return os.path.expandvars(str(path))


# --- tests -----------------------------------------------------------------------------------


def test_contains(seq: Any, value: Any) -> bool:
    """`list is contains(x)`: x is an item of the list (for `select('contains', ...)`)."""
    return value in seq


def test_any(value: Iterable[Any]) -> bool:
    """Some item is true."""
    return any(value)


def test_all(value: Iterable[Any]) -> bool:
    """Every item is true."""
    return all(value)


def test_subset(a: Iterable[Any], b: Iterable[Any]) -> bool:
    """Every item of a is in b."""
    return set(a) <= set(b)


def test_superset(a: Iterable[Any], b: Iterable[Any]) -> bool:
    """Every item of b is in a."""
    return set(a) >= set(b)


def test_nan(value: Any) -> bool:
    """A float that is not a number."""
    return isinstance(value, float) and math.isnan(value)


def test_unreachable(result: Any) -> bool:
    """A registered result of a host that could not be reached."""
    if not isinstance(result, Mapping):
        raise FilterArgumentError("the 'unreachable' test expects a registered result")
    return bool(result.get("unreachable"))


def test_reachable(result: Any) -> bool:
    """The opposite of unreachable."""
    return not test_unreachable(result)


def _path_test(check: Callable[[str], bool]) -> Callable[[Any], bool]:
    # as Ansible's: the path as written (no `~` expansion), on the workstation
    def test(path: Any) -> bool:
        return check(str(path))

    test.__doc__ = f"On the workstation: os.path.{check.__name__}."
    return test


def test_same_file(a: Any, b: Any) -> bool:
    """Both paths name the same file on the workstation."""
    try:
        return os.path.samefile(str(a), str(b))
    except OSError:
        return False


FILTERS: dict[str, Callable[..., Any]] = {
    "subelements": subelements,
    "product": product,
    "permutations": permutations,
    "combinations": combinations,
    "extract": extract,
    "random": random,
    "shuffle": shuffle,
    "log": log,
    "pow": power,
    "human_readable": human_readable,
    "human_to_bytes": human_to_bytes,
    "root": root,
    "to_uuid": to_uuid,
    "password_hash": password_hash,
    "strftime": strftime,
    "to_datetime": to_datetime,
    "urlsplit": urlsplit,
    "path_join": path_join,
    "normpath": normpath,
    "expandvars": expandvars,
}

TESTS: dict[str, Callable[..., bool]] = {
    "contains": test_contains,
    "any": test_any,
    "all": test_all,
    "subset": test_subset,
    "issubset": test_subset,
    "superset": test_superset,
    "issuperset": test_superset,
    "nan": test_nan,
    "isnan": test_nan,
    "unreachable": test_unreachable,
    "reachable": test_reachable,
    "file": _path_test(os.path.isfile),
    "is_file": _path_test(os.path.isfile),
    "directory": _path_test(os.path.isdir),
    "is_dir": _path_test(os.path.isdir),
    "link": _path_test(os.path.islink),
    "is_link": _path_test(os.path.islink),
    "exists": _path_test(os.path.exists),
    "link_exists": _path_test(os.path.lexists),
    "abs": _path_test(os.path.isabs),
    "is_abs": _path_test(os.path.isabs),
    "mount": _path_test(os.path.ismount),
    "is_mount": _path_test(os.path.ismount),
    "same_file": test_same_file,
    "is_same_file": test_same_file,
}
