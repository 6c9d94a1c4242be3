#!/usr/bin/env bash
# Install what machineroom and its tests need on a fresh Debian/Ubuntu machine, then the
# package itself (editable, with the dev tools) in ./.venv. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/sbin/sshd ]              || need+=(openssh-server)
command -v ssh >/dev/null          || need+=(openssh-client)
command -v sudo >/dev/null         || need+=(sudo)
command -v setpriv >/dev/null      || need+=(util-linux)
command -v openssl >/dev/null      || need+=(openssl)
command -v git >/dev/null          || need+=(git)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# `--test`: also what only the test suite needs (a real browser for the dashboard tests).
if [ "${1:-}" = "--test" ]; then
    [ -x /usr/bin/chromium ]       || need+=(chromium)
    command -v crontab >/dev/null  || need+=(cron)  # the cron module's tests (lab hosts)
fi
if [ "${#need[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing ${need[*]}; run as root or install them" >&2
        exit 1
    fi
    echo "setup: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The docker stage tests install packages inside lab hosts, which read this machine's lists.
if [ "$(id -u)" = 0 ] && ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then
    apt-get update -qq
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
# `--test`: ansible-core too (the ansible extra), so the fallback tests run ansible's modules
extras=dev
[ "${1:-}" = "--test" ] && extras=dev,ansible,cluster
.venv/bin/python -m pip install -q -e ".[$extras]"
# An editable install compiles none of our modules; where PYTHONDONTWRITEBYTECODE is set no
# run ever writes them, and every process compiled its ~250 modules again (~0.3 s a start).
.venv/bin/python -m compileall -q -j 0 machineroom >/dev/null
echo "setup: ready (.venv/bin/machineroom)" >&2
