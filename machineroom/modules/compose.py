"""`compose`: deploy a docker compose project with validation, backup, verification, rollback.

The Edgetainer document's software deployment, in one remote command: the compose file (and
the project's `.env`) travel on stdin; the script picks `docker compose` (v2) or
`docker-compose` (v1) on the host, validates the new files (`config -q`) before touching
anything, keeps the running version as `docker-compose.yml.prev` / `.env.prev`, pulls, runs
`up -d`, then watches every service's containers until all run (and are healthy where they
have a healthcheck) for a few seconds in a row, within `timeout`. When that fails it prints
the failing containers' last log lines, puts the previous version back and brings it up again
(with no previous version it takes the failed one down), and the task fails.

`changed` is true only when a file's content differed or when `up` created, replaced, started
or removed a container (the project's container ids and running ids are compared before and
after), so a second run of the same definition reports ok.

The script's stdout is a report: lines `__mr__ KEY VALUE`. Text of the host's making (diff,
config errors, container logs) comes on lines of its own kind (`__mr__ log NAME TEXT`), so a
container cannot forge a report line; compose's own progress goes to stderr.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

import yaml

from machineroom.errors import InputError
from machineroom.modules.base import (
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)

MARK = "__mr__"
COMPOSE_FILE = "docker-compose.yml"
ENV_FILE = ".env"
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

# sh functions of the script; `dc` runs compose for the project from the project folder.
_LIBRARY = r"""
mr() { printf '%s %s\n' "$MARK" "$*"; }
mr_fail() { printf 'machineroom: %s\n' "$*" >&2; exit 1; }
mr_lines() { sed "s/^/$MARK $1 /"; }
if docker compose version >/dev/null 2>&1; then
  dc() { docker compose -p "$project" "$@"; }
  mr tool "v2 $(docker compose version --short 2>/dev/null || docker compose version | head -n 1)"
elif command -v docker-compose >/dev/null 2>&1; then
  dc() { docker-compose -p "$project" "$@"; }
  mr tool v1
else
  mr_fail "neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed"
fi
docker info >/dev/null 2>&1 || mr_fail "the docker daemon does not answer (docker info failed)"
mr_ids() {  # the project's container ids (one-off `run` containers excluded), sorted
  docker ps -aq --no-trunc --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.oneoff=False" "$@" | sort
}
mr_snapshot() { printf '%s\n--\n%s\n' "$(mr_ids)" "$(mr_ids --filter status=running)"; }
mr_fmt='{{index .Config.Labels "com.docker.compose.service"}} {{.Name}} {{.State.Status}}'
mr_fmt="$mr_fmt"' {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}} {{.State.ExitCode}}'
mr_states() {  # SERVICE NAME STATUS HEALTH EXIT for each container of the project
  mr_s_ids=$(mr_ids)
  [ -n "$mr_s_ids" ] || return 0
  docker inspect -f "$mr_fmt" $mr_s_ids \
    | sed 's#^\([^ ]*\) /#\1 #'
}
# One look at the services: prints ok, wait or bad, then the containers that are not fine.
mr_judge() {
  { printf '%s\n' "$mr_services" | sed 's/^/S /'; mr_states | sed 's/^/C /'; } | awk '
    $1 == "S" { if ($2 != "") want[$2] = 1; next }
    $1 == "C" { seen[$2] = 1
      if ($4 == "exited" || $4 == "dead" || $5 == "unhealthy") {
        bad = 1; print "B", $3, $4, $5, $6 }
      else if ($4 != "running" || $5 == "starting") { wait = 1; print "W", $3, $4, $5, $6 } }
    END { for (s in want) if (!(s in seen)) { wait = 1; print "M", s }
      print (bad ? "bad" : (wait ? "wait" : "ok")) }'
}
# Poll until every service is fine for $2 seconds in a row, or $1 seconds pass, or one fails.
mr_verify() {
  mr_v_end=$(( $(date +%s) + $1 )) mr_v_since=
  while :; do
    mr_v_out=$(mr_judge); mr_v_verdict=$(printf '%s\n' "$mr_v_out" | tail -n 1)
    mr_v_now=$(date +%s)
    if [ "$mr_v_verdict" = ok ]; then
      [ -n "$mr_v_since" ] || mr_v_since=$mr_v_now
      [ $(( mr_v_now - mr_v_since )) -lt "$2" ] || return 0
    else mr_v_since=; fi
    [ "$mr_v_verdict" != bad ] || return 1
    [ "$mr_v_now" -lt "$mr_v_end" ] || return 2
    sleep 0.5 2>/dev/null || sleep 1
  done
}
mr_report_failure() {  # the containers that are not fine, and their last log lines
  printf '%s\n' "$mr_v_out" | sed '$d' | while read -r mr_k mr_n mr_st mr_h mr_x; do
    if [ "$mr_k" = M ]; then mr bad "$mr_n" missing - -; continue; fi
    mr bad "$mr_n" "$mr_st" "$mr_h" "$mr_x"
    docker logs --tail "$log_lines" "$mr_n" 2>&1 | mr_lines "log $mr_n"
  done
}
mr_final_states() { mr_states | while read -r mr_line; do mr state "$mr_line"; done; }
"""

_PRESENT = r"""
case $dir in /*) ;; *) dir=$PWD/$dir ;; esac
stage=
trap 'rm -rf -- ${stage:+"$stage"}' EXIT
if [ "$CHECK" = 1 ] || [ ! -d "$dir" ]; then stage=$(mktemp -d) || mr_fail "mktemp failed"
  if [ "$CHECK" = 0 ]; then mkdir -p -- "$dir" || mr_fail "cannot create $dir"; fi
else stage=$(mktemp -d -- "$dir/.machineroom.XXXXXXXX") || mr_fail "cannot write in $dir"; fi
cat >"$stage/bundle" || mr_fail "cannot read the files from stdin"
tail -c +1 "$stage/bundle" | head -c "$compose_len" >"$stage/compose"
tail -c +$(( compose_len + 1 )) "$stage/bundle" >"$stage/env"
rm -f -- "$stage/bundle"
# what differs
files_changed=0
if [ -f "$dir/$COMPOSE" ] && cmp -s -- "$stage/compose" "$dir/$COMPOSE"; then mr file same
else
  files_changed=1
  if [ -f "$dir/$COMPOSE" ]; then mr file changed; mr_old=$dir/$COMPOSE
  else mr file new; mr_old=/dev/null; fi
  if [ "$DIFF" = 1 ]; then
    diff -u -L "before: $dir/$COMPOSE" -L "after: $dir/$COMPOSE" -- "$mr_old" "$stage/compose" \
      | mr_lines diff
  fi
fi
if [ "$manage_env" = 1 ]; then
  if [ -f "$dir/$ENVF" ] && cmp -s -- "$stage/env" "$dir/$ENVF"; then mr envfile same
  else
    files_changed=1; mr envfile changed
    # keys only: values may be secrets
    [ -f "$dir/$ENVF" ] && mr_oldenv=$dir/$ENVF || mr_oldenv=/dev/null
    awk -v oldf="$mr_oldenv" 'FILENAME == oldf { i = index($0, "=")
        if (i) old[substr($0, 1, i - 1)] = substr($0, i + 1); next }
      { i = index($0, "="); if (!i) next; k = substr($0, 1, i - 1); seen[k] = 1
        if (!(k in old)) print "added", k
        else if (old[k] != substr($0, i + 1)) print "changed", k }
      END { for (k in old) if (!(k in seen)) print "removed", k }' "$mr_oldenv" "$stage/env" \
      | mr_lines env
  fi
fi
# validate the new files before anything changes
if [ -d "$dir" ]; then vdir=$dir; else vdir=$stage; fi
if [ "$manage_env" = 1 ]; then venv=$stage/env
elif [ -f "$dir/$ENVF" ]; then venv=$dir/$ENVF
else venv=; fi
cp -- "$stage/compose" "$stage/$COMPOSE"
# (one compose call validates and lists the services: each costs a second with v1)
if ! mr_v=$(dc --project-directory "$vdir" -f "$stage/$COMPOSE" ${venv:+--env-file "$venv"} \
    config 2>&1); then
  mr invalid 1; printf '%s\n' "$mr_v" | mr_lines error; exit 3
fi
mr valid 1
mr_services=$(printf '%s\n' "$mr_v" | awk '/^services:/ { s = 1; next } /^[^ ]/ { s = 0 }
  s && /^  [^ ]/ { sub(/^  /, ""); sub(/:.*/, ""); gsub(/["\047]/, ""); print }')
mr_v=
if [ "$CHECK" = 1 ]; then
  # would up change containers? only a guess: are they all up?
  mr_v_out=$(mr_judge); mr running "$(printf '%s\n' "$mr_v_out" | tail -n 1)"
  exit 0
fi
# install, keeping the running version
backup=0
if [ "$files_changed" = 1 ]; then
  if [ -f "$dir/$COMPOSE" ]; then
    cp -p -- "$dir/$COMPOSE" "$dir/$COMPOSE.prev" || mr_fail "cannot back up $dir/$COMPOSE"
    backup=1
    if [ -f "$dir/$ENVF" ]; then cp -p -- "$dir/$ENVF" "$dir/$ENVF.prev"
    else rm -f -- "$dir/$ENVF.prev"; fi
    mr backup "$dir/$COMPOSE.prev"
  fi
  chmod 644 "$stage/compose"; mv -f -- "$stage/compose" "$dir/$COMPOSE" \
    || mr_fail "cannot write $dir/$COMPOSE"
  if [ "$manage_env" = 1 ]; then
    chmod 600 "$stage/env"; mv -f -- "$stage/env" "$dir/$ENVF" || mr_fail "cannot write $dir/$ENVF"
  fi
fi
cd -- "$dir" || mr_fail "cannot enter $dir"
before=$(mr_snapshot)
if [ "$pull" = always ]; then dc pull >&2 || mr_deploy_failed pull; fi
if [ "$mr_deployed" = 0 ]; then
  dc up -d $up_opts >&2 || mr_deploy_failed up
fi
if [ "$mr_deployed" = 0 ] && [ "$restart" = 1 ]; then dc restart >&2 || mr_deploy_failed restart; fi
after=$(mr_snapshot)
if [ "$before" != "$after" ] || [ "$restart" = 1 ]; then mr containers changed; stable=$settle
else mr containers same; stable=0; fi
if [ "$mr_deployed" = 0 ]; then
  mr_verify "$timeout" "$stable"; mr_rc=$?
  if [ $mr_rc = 0 ]; then mr verify ok; mr_final_states; exit 0; fi
  [ $mr_rc = 1 ] && mr verify failed || mr verify timeout
  mr_report_failure
fi
# roll back: the previous version, only when this run replaced it
if [ "$files_changed" = 0 ]; then mr rollback unchanged; mr_final_states; exit 2; fi
cp -p -- "$COMPOSE" "$COMPOSE.failed"; [ ! -f "$ENVF" ] || cp -p -- "$ENVF" "$ENVF.failed"
if [ "$backup" = 1 ]; then
  mv -f -- "$COMPOSE.prev" "$COMPOSE"
  if [ -f "$ENVF.prev" ]; then mv -f -- "$ENVF.prev" "$ENVF"
  elif [ "$manage_env" = 1 ]; then rm -f -- "$ENVF"; fi
  mr_services=$(dc config --services 2>/dev/null)
  if dc up -d --remove-orphans >&2 && mr_verify "$timeout" "$settle"; then mr rollback ok
  else mr rollback failed; fi
else
  dc down --remove-orphans >&2 && mr rollback down || mr rollback failed
  rm -f -- "$COMPOSE"; [ "$manage_env" = 0 ] || rm -f -- "$ENVF"
fi
mr_final_states
exit 2
"""

_DEPLOY_FAILED = r"""
mr_deployed=0
mr_deploy_failed() { mr step_failed "$1"; mr_deployed=1; mr_v_out=$(mr_judge); mr_report_failure; }
"""

_ABSENT = r"""
if [ -f "$dir/$COMPOSE" ]; then cd -- "$dir" || mr_fail "cannot enter $dir"; fi
if [ -z "$(mr_ids)" ]; then mr containers none; exit 0; fi
mr containers changed
[ "$CHECK" = 0 ] || exit 0
if [ -f "$COMPOSE" ]; then dc down --remove-orphans >&2 || mr_fail "compose down failed"
else docker rm -f $(mr_ids) >&2 || mr_fail "cannot remove the containers"; fi
"""


def project_name(args: Mapping[str, Any]) -> str:
    """The compose project name: `project_name`, else the folder's name as compose makes it."""
    given = args.get("project_name")
    if given:
        name = str(given)
        if not _PROJECT.match(name):
            raise InputError(
                f"compose: project_name {name!r} is not a compose project name",
                expected="lowercase letters, digits, '_' and '-', starting with a letter or digit",
            )
        return name
    base = str(args["project_src"]).rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[^a-z0-9_-]", "", base.lower()).lstrip("_-")
    if not name:
        raise InputError(
            f"compose: cannot make a project name of {base!r}", expected="a project_name"
        )
    return name


def render_env(env: Mapping[str, Any]) -> str:
    """The `.env` text: `KEY=value` lines (no quoting: compose v1 and v2 read them alike)."""
    lines = []
    for key, value in env.items():
        if not _ENV_KEY.match(str(key)):
            raise InputError(f"compose: env key {key!r} is not a variable name")
        text = (
            "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        )
        if "\n" in text or "\r" in text:
            raise InputError(f"compose: env {key}: a newline cannot be written in .env")
        lines.append(f"{key}={text}\n")
    return "".join(lines)


class ComposeModule(Module):
    """`compose`: project_src, project_name, definition or src, env, state, pull, timeout."""

    name: ClassVar[str] = "compose"
    aliases: ClassVar[tuple[str, ...]] = ("docker_compose",)
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "project_src": {"type": "string", "minLength": 1},
            "project_name": {"type": "string", "minLength": 1},
            "definition": {"type": ["string", "object"]},
            "src": {"type": "string", "minLength": 1},
            "env": {"type": "object"},
            "state": {"enum": ["present", "absent", "restarted"], "default": "present"},
            "pull": {"enum": ["always", "missing", "never"], "default": "missing"},
            "timeout": {"type": "number", "minimum": 0, "default": 60},
            "settle": {"type": "number", "minimum": 0, "default": 3},
            "remove_orphans": {"type": "boolean", "default": False},
            "log_lines": {"type": "integer", "minimum": 1, "default": 20},
        },
        "required": ["project_src"],
        "additionalProperties": False,
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """One script: pick compose, then deploy (present/restarted) or take down (absent)."""
        state = args.get("state") or "present"
        timeout = float(args.get("timeout", 60))
        head = (
            f"CHECK={int(ctx.check)} DIFF={int(ctx.diff)} MARK={MARK}\n"
            f"dir={quote(str(args['project_src']).rstrip('/') or '/')} "
            f"project={quote(project_name(args))}\n"
            f"COMPOSE={COMPOSE_FILE} ENVF={ENV_FILE} "
            f"timeout={int(timeout)} settle={int(float(args.get('settle', 3)))} "
            f"log_lines={int(args.get('log_lines', 20))}\n"
        )
        if state == "absent":
            return RemoteStep(head + _LIBRARY + _ABSENT, timeout=timeout + 300)
        compose = self._definition(args, ctx).encode()
        env = args.get("env")
        env_bytes = render_env(env).encode() if env is not None else b""
        up_opts = "--remove-orphans" if args.get("remove_orphans") else ""
        head += (
            f"compose_len={len(compose)} manage_env={int(env is not None)} "
            f"pull={quote(args.get('pull') or 'missing')} up_opts={quote(up_opts)} "
            f"restart={int(state == 'restarted')}\n"
        )
        # up_opts holds only our own words: the script splits it on purpose
        script = head + _LIBRARY + _DEPLOY_FAILED + _PRESENT
        return RemoteStep(script, stdin=compose + env_bytes, timeout=2 * timeout + 600)

    @staticmethod
    def _definition(args: Mapping[str, Any], ctx: ModuleContext) -> str:
        definition = args.get("definition")
        if definition is not None and args.get("src"):
            raise InputError("compose: give definition or src, not both")
        if args.get("src"):
            return ctx.render_template(str(args["src"]))
        if definition is None:
            raise InputError("compose: nothing to deploy", expected="definition or src")
        if isinstance(definition, Mapping):
            return yaml.safe_dump(dict(definition), sort_keys=False, default_flow_style=False)
        text = str(definition)
        return text if text.endswith("\n") else text + "\n"

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Changed when a file differed or containers were (re)created, started or removed."""
        report: dict[str, list[str]] = {}
        logs: dict[str, list[str]] = {}
        for line in output.stdout.splitlines():
            parts = line.split(" ", 2)
            if len(parts) < 2 or parts[0] != MARK:
                continue
            kind, rest = parts[1], parts[2] if len(parts) > 2 else ""
            if kind == "log":
                name, _, text = rest.partition(" ")
                logs.setdefault(name, []).append(text)
            else:
                report.setdefault(kind, []).append(rest)
        first = {k: v[0] for k, v in report.items()}
        project_dir = str(args["project_src"])
        result: dict[str, Any] = {
            "project_src": project_dir,
            "project_name": project_name(args),
            "compose": first.get("tool", ""),
            "containers": [_container(line) for line in report.get("state", [])],
            "rc": output.exit_code,
            "stderr": output.stderr,
        }
        diff = self._diff(report) if ctx.diff else ""
        if output.exit_code == 3 and "invalid" in first:
            errors = "\n".join(report.get("error", []))[-2000:]
            return Outcome(
                "failed",
                msg=f"{project_dir}: the new definition is invalid: {errors}",
                diff=diff,
                result=result,
            )
        if output.exit_code == 2:
            return self._failed(project_dir, first, report, logs, diff, result)
        if output.exit_code != 0:
            err = output.stderr
            at = err.rfind("machineroom: ")
            lines = [ln for ln in err.splitlines() if ln.strip()]
            msg = err[at + 13 :].strip() if at >= 0 else (lines[-1] if lines else "")
            return Outcome("failed", msg=msg or f"exit {output.exit_code}", result=result)
        state = args.get("state") or "present"
        if state == "absent":
            if first.get("containers") == "changed":
                verb = "would take" if ctx.check else "took"
                return Outcome(
                    "changed", msg=f"{verb} project {result['project_name']} down", result=result
                )
            return Outcome(
                "ok", msg=f"project {result['project_name']} has no containers", result=result
            )
        files = first.get("file") in ("changed", "new") or first.get("envfile") == "changed"
        if ctx.check:
            would_start = first.get("running") != "ok"
            if files or would_start:
                what = "the definition changed" if files else "services are not all running"
                return Outcome(
                    "changed", msg=f"would deploy {project_dir}: {what}", diff=diff, result=result
                )
            return Outcome("ok", msg=f"{project_dir} already deployed and running", result=result)
        containers = first.get("containers") == "changed"
        result["backup"] = first.get("backup")
        if files or containers:
            done = "deployed" if files else "brought up"
            return Outcome("changed", msg=f"{done} {project_dir}", diff=diff, result=result)
        return Outcome("ok", msg=f"{project_dir} already deployed and running", result=result)

    @staticmethod
    def _diff(report: Mapping[str, list[str]]) -> str:
        text = "".join(line + "\n" for line in report.get("diff", []))
        env = report.get("env", [])
        if env:
            text += "--- before: .env (keys only)\n+++ after: .env (keys only)\n"
            for change in env:
                what, _, key = change.partition(" ")
                sign = {"added": "+", "removed": "-"}.get(what, "~")
                text += f"{sign}{key}{' (value changed)' if sign == '~' else ''}\n"
        return text

    @staticmethod
    def _failed(
        project_dir: str,
        first: Mapping[str, str],
        report: Mapping[str, list[str]],
        logs: Mapping[str, list[str]],
        diff: str,
        result: dict[str, Any],
    ) -> Outcome:
        why = first.get("step_failed")
        if why:
            reason = f"compose {why} failed"
        elif first.get("verify") == "timeout":
            reason = "services were not all running (and healthy) within the timeout"
        else:
            reason = "a service stopped or became unhealthy"
        bad = []
        for line in report.get("bad", []):
            name, status, health, code = [*line.split(" "), "", "", ""][:4]
            what = status if health in ("-", "") else f"{status}, {health}"
            if status == "exited":
                what += f" (exit code {code})"
            bad.append(f"{name}: {what}")
        rollback = first.get("rollback", "")
        after = {
            "ok": "rolled back to the previous version, which runs again",
            "failed": "rolled back to the previous version, which does not run either",
            "down": "no previous version: took the failed one down",
            "unchanged": "the definition did not change: nothing to roll back to",
        }.get(rollback, "")
        parts = [f"{project_dir}: {reason}"]
        if bad:
            parts.append("; ".join(bad))
        if after:
            parts.append(after)
        msg = "; ".join(parts)
        for name, lines in logs.items():
            msg += f"\n--- last log lines of {name}:\n" + "\n".join(lines)
        result["rolled_back"] = rollback in ("ok", "failed", "down")
        result["rollback"] = rollback
        result["failed_containers"] = bad
        result["logs"] = {name: list(lines) for name, lines in logs.items()}
        return Outcome("failed", msg=msg, diff=diff, result=result)


def _container(line: str) -> dict[str, Any]:
    """`SERVICE NAME STATUS HEALTH EXIT` as a dict."""
    service, name, status, health, code = [*line.split(" "), "", "", "", ""][:5]
    return {
        "service": service,
        "name": name,
        "status": status,
        "health": None if health in ("-", "") else health,
        "exit_code": int(code) if code.lstrip("-").isdigit() else None,
    }
