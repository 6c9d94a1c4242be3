"""A run lifts the soft limit on open files when its hosts need more than it allows."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import resource
from machineroom.runs.session import _raise_open_file_limit
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 4096))
_raise_open_file_limit(2)
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
_raise_open_file_limit(300)
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
_raise_open_file_limit(5000)
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def test_the_soft_open_file_limit_grows_with_the_hosts_up_to_the_hard_one() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, check=True
    ).stdout.split()
    # 256 files and 8 a host are wanted: 64 grows to 272 for 2 hosts, 2656 for 300 hosts;
    # 5000 hosts stop at the hard limit
    assert out == ["272", "2656", "4096"]
