#!/usr/bin/env bash
# The main job, end to end on this machine: set machineroom up, start three disposable SSH
# hosts (real sshd on 127.0.7.1-3), apply a real playbook to them twice (the second run
# changes nothing), and work on them as a user would, metrics and alerts included. Needs root (the lab uses mount
# namespaces). Leaves the demo repo in /tmp/machineroom-demo to look at.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
bash scripts/setup.sh
MR="$ROOT/.venv/bin/machineroom"
LAB=/tmp/lab-mr-demo

"$MR" lab up 3 --dir "$LAB" --net 127.0.7 >/dev/null
trap '"$MR" lab down --dir "$LAB" >/dev/null' EXIT

rm -rf /tmp/machineroom-demo && mkdir -p /tmp/machineroom-demo && cd /tmp/machineroom-demo
git init -q .
cp "$LAB/inventory.yml" inventory.yml

step() { printf '\n\033[1m$ %s\033[0m\n' "machineroom $*"; "$MR" "$@"; }
step validate
step plan "$ROOT/playbooks/baseline.yml"
step apply "$ROOT/playbooks/baseline.yml" --accept-new-host-keys
step apply "$ROOT/playbooks/baseline.yml"          # the second run: zero changes
step run all -- 'echo "$(hostname): $(uname -sr), up $(cut -d. -f1 /proc/uptime)s"'
step run 'lab:!h2' --become -- 'id -un'
step scanports all --ports 22,80,443,8000-8010
cat > alerts.yml <<'RULES'
rules:
  disk-full: {metric: "disk_used_pct:*", above: 90, for: 10m, severity: critical}
  busy: {metric: load1, above: 50, severity: warning}
RULES
step collect                                       # metrics, one remote command a host
sleep 1
step collect
step status
step metrics h1 load1 --since 1h
step alerts --all
step retire h3
step ls
step history
step show 2 --host h1
