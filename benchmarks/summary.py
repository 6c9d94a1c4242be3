"""The benchmark's figures: medians per cell, ratios, scaling, and latest.md (run.py's output).

A cell is one (host count N, tool, phase); a run's row holds wall, controller CPU (`cpu`), host
CPU (`host_cpu`), peak tree RSS and remote commands. Costs "per host-task" divide by
N x TASKS (10 tasks a host; the floor's 10 `true` commands count as its tasks).
"""

from __future__ import annotations

import statistics

TASKS = 10
# Per host-task cost at the largest N over the same at the reference N: at most this is
# called linear (a little noise and the fixed start-up shrink or grow it either way).
LINEAR = 1.25
RSS_TARGET_MB = 300


def per_host_task_ms(seconds: float, n: int) -> float:
    """Milliseconds per host and task."""
    return round(seconds * 1000 / (n * TASKS), 2)


def summarise(rows: list[dict], tools: list[str]) -> dict:
    """Medians, min-max per (N, tool, phase) and the within-round ratios behind the targets."""
    out: dict = {"cells": [], "ratios": []}
    counts = sorted({r["n"] for r in rows})
    for n in counts:
        for tool in tools:
            for phase in ("first", "rerun", "floor"):
                cell = [r for r in rows if (r["n"], r["tool"], r["phase"]) == (n, tool, phase)]
                if cell:
                    out["cells"].append(summarise_cell(n, tool, phase, cell))
        out["ratios"] += ratios(rows, n)
    out["scaling"] = scaling(out["cells"])
    return out


def summarise_cell(n: int, tool: str, phase: str, cell: list[dict]) -> dict:
    """One cell's medians over its rounds."""
    walls = [r["wall"] for r in cell]
    cpu = statistics.median(r["cpu"] for r in cell)
    hosts = [r["host_cpu"] for r in cell if r.get("host_cpu") is not None]
    host_cpu = statistics.median(hosts) if hosts else None
    return {
        "n": n, "tool": tool, "phase": phase, "rounds": len(cell),
        "ok": all(r["ok"] for r in cell),
        "wall_median": round(statistics.median(walls), 3),
        "wall_min": min(walls), "wall_max": max(walls),
        "cpu_median": round(cpu, 2),
        "host_cpu_median": None if host_cpu is None else round(host_cpu, 2),
        "cpu_ms_per_host_task": per_host_task_ms(cpu, n),
        "host_cpu_ms_per_host_task": None if host_cpu is None else per_host_task_ms(host_cpu, n),
        "tree_rss_mb_max": max(r["tree_rss_mb"] for r in cell),
        "commands_per_task_host": statistics.median(
            r.get("commands_per_task_host", 1.0 if phase == "floor" else 0) for r in cell),
        "load1": [min(r["load1"] for r in cell), max(r["load1"] for r in cell)],
    }  # fmt: skip


def ratios(rows: list[dict], n: int) -> list[dict]:
    """Wall-time ratios at N, each taken between runs of the same round."""
    out = []

    def ratio(name: str, num: tuple[str, str], den: tuple[str, str], target: str) -> None:
        values = []
        for rnd in sorted({r["round"] for r in rows if r["n"] == n}):
            by = {(r["tool"], r["phase"]): r for r in rows if (r["n"], r["round"]) == (n, rnd)}
            if num in by and den in by and by[num]["ok"] and by[den]["ok"]:
                values.append(by[num]["wall"] / by[den]["wall"])
        if values:
            out.append({
                "n": n, "ratio": name, "target": target, "rounds": len(values),
                "median": round(statistics.median(values), 2),
                "min": round(min(values), 2), "max": round(max(values), 2),
            })  # fmt: skip

    mr = ("machineroom", "rerun")
    floor = ("floor", "floor")
    ratio("ansible-tuned / machineroom, re-run", ("ansible-tuned", "rerun"), mr, "≥ 30 at 50")
    ratio("pyinfra / machineroom, re-run", ("pyinfra", "rerun"), mr, "≥ 3 at 50")
    ratio("machineroom / raw floor, re-run", mr, floor, "≤ 1 at 50")
    ratio("pyinfra / machineroom, first run", ("pyinfra", "first"),
          ("machineroom", "first"), "≥ 2.5 at 50")  # fmt: skip
    ratio("machineroom-noprograms / machineroom, re-run", ("machineroom-noprograms", "rerun"),
          mr, "(what per-host programs gain)")  # fmt: skip
    ratio("machineroom-noprograms / machineroom, first run",
          ("machineroom-noprograms", "first"), ("machineroom", "first"), "")  # fmt: skip
    ratio("ansible-defaults / machineroom, re-run", ("ansible-defaults", "rerun"), mr, "")
    ratio("ansible-tuned / machineroom-nofacts, re-run", ("ansible-tuned", "rerun"),
          ("machineroom-nofacts", "rerun"), "(same playbook file)")  # fmt: skip
    ratio("machineroom-nofacts / raw floor, re-run", ("machineroom-nofacts", "rerun"), floor, "")
    return out


def scaling(cells: list[dict]) -> list[dict]:
    """Per tool and phase: per host-task cost at the largest N over the same at 50 hosts (or
    the smallest N above 1 when there is no 50, as one host is mostly start-up; or 1)."""
    out = []
    for tool, phase in dict.fromkeys((c["tool"], c["phase"]) for c in cells):
        # a run that failed its checks did not do the work: its cost says nothing
        by_n = {c["n"]: c for c in cells if (c["tool"], c["phase"]) == (tool, phase) and c["ok"]}
        counts = sorted(by_n)
        if len(counts) < 2:
            continue
        top = counts[-1]
        between = [n for n in counts if 1 < n < top]
        ref = 50 if 50 in between else (between or counts)[0]
        a, b = by_n[ref], by_n[top]

        def growth(key: str, a: dict = a, b: dict = b) -> float | None:
            if a.get(key) in (None, 0) or b.get(key) is None:
                return None
            return round(b[key] / a[key], 2)

        wall = round((b["wall_median"] / top) / (a["wall_median"] / ref), 2)
        cpu, host = growth("cpu_ms_per_host_task"), growth("host_cpu_ms_per_host_task")
        total_a = a["cpu_ms_per_host_task"] + (a["host_cpu_ms_per_host_task"] or 0)
        total_b = b["cpu_ms_per_host_task"] + (b["host_cpu_ms_per_host_task"] or 0)
        total = round(total_b / total_a, 2) if total_a else None
        out.append({
            "tool": tool, "phase": phase, "from": ref, "to": top,
            "wall_per_host_task": wall, "cpu_per_host_task": cpu,
            "host_cpu_per_host_task": host, "total_cpu_per_host_task": total,
            "linear": total is not None and total <= LINEAR and wall <= LINEAR,
            "rss_mb_at_top": b["tree_rss_mb_max"],
        })  # fmt: skip
    return out


def fmt_cell(c: dict | None) -> str:
    """A wall-time cell: median (min–max), flagged when a run failed its checks."""
    if c is None:
        return "–"
    text = f"{c['wall_median']:.2f} ({c['wall_min']:.2f}–{c['wall_max']:.2f})"
    return text if c["ok"] else text + " **FAILED**"


def _pair(cells: tuple[dict | None, ...], key: str, spec: str = ".2f") -> str:
    return " / ".join("–" if c is None or c.get(key) is None else f"{c[key]:{spec}}" for c in cells)


def render_markdown(result: dict) -> str:
    """The results as markdown: context, the wall-time table, resources, ratios, scaling."""
    m, v = result["machine"], result["versions"]
    lines = [
        f"# Benchmark results: {result['date']}",
        "",
        f"Command: `{result['command']}`  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, {m['os']}, kernel "
        f"{m['kernel']}, {m['openssh']}, Python {m['python']}  ",
        f"Versions: machineroom {m['machineroom']} (paramiko {m['machineroom_paramiko']}), "
        f"ansible-core {v['ansible-core']}, pyinfra {v['pyinfra']} (paramiko {v['paramiko']})  ",
        f"Load average (1 min) during the runs: {result['load_range'][0]:.2f}–"
        f"{result['load_range'][1]:.2f} (a shared 2-core machine; other work ran too)  ",
        "Workload: the env stage, 10 tasks per host (benchmarks/workload). Fact gathering "
        "was **on** for `machineroom`, `machineroom-noprograms` and `ansible-defaults` "
        "(site.yml), off for `machineroom-nofacts` and `ansible-tuned` (site_nofacts.yml).",
        "",
        "## Wall time, seconds: median (min–max) over rounds",
        "",
        "Controller CPU: the tool's process tree; host CPU: every host's sshd and what its "
        "sessions ran; both per host and task (N × 10) in ms, medians.",
        "",
        "| hosts | tool | rounds | first run | re-run | CPU s first / re-run | "
        "peak tree RSS MB | remote cmds per task per host first / re-run | "
        "controller CPU ms per host-task first / re-run | "
        "host CPU ms per host-task first / re-run |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    cells = {(c["n"], c["tool"], c["phase"]): c for c in result["summary"]["cells"]}
    for n in result["hosts"]:
        for tool in result["tools"]:
            if tool == "floor":
                c = cells.get((n, "floor", "floor"))
                if c:
                    lines.append(
                        f"| {n} | raw floor (paramiko, 10 × `true`) | {c['rounds']} | – | "
                        f"{fmt_cell(c)} | {c['cpu_median']:.2f} | {c['tree_rss_mb_max']:.0f} | "
                        f"1.0 | {_pair((c,), 'cpu_ms_per_host_task')} | "
                        f"{_pair((c,), 'host_cpu_ms_per_host_task')} |"
                    )
                continue
            f, r = cells.get((n, tool, "first")), cells.get((n, tool, "rerun"))
            if not f and not r:
                continue
            rounds = (f or r)["rounds"]  # type: ignore[index]
            rss = max(c["tree_rss_mb_max"] for c in (f, r) if c)
            lines.append(
                f"| {n} | {tool} | {rounds} | {fmt_cell(f)} | {fmt_cell(r)} | "
                f"{_pair((f, r), 'cpu_median')} | {rss:.0f} | "
                f"{_pair((f, r), 'commands_per_task_host')} | "
                f"{_pair((f, r), 'cpu_ms_per_host_task')} | "
                f"{_pair((f, r), 'host_cpu_ms_per_host_task')} |"
            )
    lines += ["", "Start-up alone (median of 3): " + ", ".join(
        f"`{k}` {v:.3f} s" for k, v in result["startup"].items()), ""]  # fmt: skip
    lines += [
        "## Ratios of wall times taken within the same round: median (min–max)",
        "",
        "| hosts | ratio | target | rounds | median | min–max |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for r in result["summary"]["ratios"]:
        lines.append(
            f"| {r['n']} | {r['ratio']} | {r['target']} | {r['rounds']} | {r['median']:.2f} | "
            f"{r['min']:.2f}–{r['max']:.2f} |"
        )
    lines += render_scaling(result, cells)
    lines += ["", "Notes:", *[f"- {note}" for note in result["notes"]], ""]
    return "\n".join(lines)


def render_scaling(result: dict, cells: dict) -> list[str]:
    """The scaling table (one row per tool, phase and N) and a line per tool on linearity."""
    lines = [
        "",
        "## Scaling: cost per host and task as hosts grow (medians)",
        "",
        "| tool | phase | hosts | wall s | controller CPU ms per host-task | "
        "host CPU ms per host-task | peak tree RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for tool in result["tools"]:
        for phase in ("floor",) if tool == "floor" else ("first", "rerun"):
            for n in result["hosts"]:
                c = cells.get((n, tool, phase))
                if c:
                    host = c["host_cpu_ms_per_host_task"]
                    lines.append(
                        f"| {tool} | {phase} | {n} | {fmt_cell(c)} | "
                        f"{c['cpu_ms_per_host_task']:.2f} | "
                        f"{'–' if host is None else f'{host:.2f}'} | "
                        f"{c['tree_rss_mb_max']:.0f} |"
                    )
    lines += ["", "Linear in hosts × tasks: per host-task cost at the largest N over the same "
              "at the reference N (50, else the smallest above 1, else 1; failed runs left out), "
              f"linear when ≤ {LINEAR} for both wall and controller + host CPU; peak RSS against "
              f"the {RSS_TARGET_MB} MB target.", ""]  # fmt: skip
    if not result["summary"]["scaling"]:
        lines.append("- (no tool ran correctly at two host counts or more: no ratio)")
    for s in result["summary"]["scaling"]:
        verdict = "linear" if s["linear"] else "**not linear**"
        times = {k: "–" if s[k] is None else f"× {s[k]}" for k in s if k.endswith("host_task")}
        rss = s["rss_mb_at_top"]
        rss_note = f"{rss:.0f} MB" + (" (≤ 300 MB)" if rss <= RSS_TARGET_MB else " (> 300 MB)")
        lines.append(
            f"- {s['tool']} {s['phase']}, {s['from']} → {s['to']} hosts: {verdict}; per "
            f"host-task wall {times['wall_per_host_task']}, controller CPU "
            f"{times['cpu_per_host_task']}, host CPU {times['host_cpu_per_host_task']}, both "
            f"CPUs {times['total_cpu_per_host_task']}; peak RSS at {s['to']}: {rss_note}"
        )
    return lines
