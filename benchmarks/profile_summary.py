"""Summarise a py-spy raw (collapsed) profile of `machineroom apply`: where the CPU goes.

    python benchmarks/profile_summary.py results/profile-n50-pyspy.txt [--rate 250]

Each sample of a running (not idle) thread is put in one category: import if any frame is
importing a module, else the category of the frame nearest the leaf that belongs to a known
library or machineroom package. Prints seconds (samples / rate) per category, per thread
kind, and the functions with the most self and inclusive samples.
"""

from __future__ import annotations

import argparse
import collections
import re
from pathlib import Path

# (category, pattern on the frame's file), tried from the leaf upwards
RULES = [
    ("ssh: key exchange, auth (paramiko, cryptography)", r"paramiko/(kex_|auth_|ed25519|pkey|"
     r"rsakey|ecdsakey|hostkeys|client)|cryptography/"),
    ("ssh: packets, channels (paramiko)", r"paramiko/"),
    ("templating (jinja2, machineroom.templating)", r"jinja2/|machineroom/templating|"
     r"machineroom/filters"),
    ("state DB (sqlite, machineroom.state)", r"sqlite3/|sqlite_utils/|machineroom/state/"),
    ("events, console report", r"machineroom/report/|machineroom/events|click/"),
    ("load + validation (yaml, schema, playbook, inventory, vars)",
     r"yaml/|jsonschema|referencing/|machineroom/(yamlio|schema|playbook|inventory|plan|"
     r"vars|vault)"),
    ("ssh: machineroom connection layer", r"machineroom/connection/"),
    ("executor + modules (per task, controller)", r"machineroom/(executor|modules)/"),
    ("cli", r"machineroom/cli/"),
    ("threads, queues, other stdlib", r"threading\.py|queue\.py|concurrent/|selectors|socket"),
]  # fmt: skip
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def split_frames(stack: str) -> tuple[str, list[tuple[str, str]]]:
    """The thread name and the (function, file) frames, root first."""
    parts = stack.split(";")
    thread = parts[0].split(": ", 1)[-1]
    frames = []
    for part in parts[1:]:
        match = FRAME.match(part)
        frames.append((match["func"], match["file"]) if match else (part, ""))
    return thread, frames


def categorise(frames: list[tuple[str, str]]) -> str:
    """One category for one sample (see the module doc)."""
    if any(func == "_find_and_load" for func, _ in frames):
        return "imports (interpreter start-up excluded)"
    for _, file in reversed(frames):
        for name, pattern in RULES:
            if re.search(pattern, file):
                return name
    return "other"


def thread_kind(thread: str) -> str:
    """MainThread, paramiko transport threads, worker pool threads, others."""
    if "MainThread" in thread:
        return "main thread"
    if thread.startswith("Thread-") and "(" not in thread:
        return "paramiko transport threads"
    return re.sub(r"[_-]?\d+.*$", "", thread) or thread


def main() -> None:
    """Print the summary."""
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--rate", type=float, default=250)
    args = parser.parse_args()
    by_category: collections.Counter[str] = collections.Counter()
    by_thread: collections.Counter[str] = collections.Counter()
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in Path(args.profile).read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        thread, frames = split_frames(stack)
        total += count
        by_category[categorise(frames)] += count
        by_thread[thread_kind(thread)] += count
        if frames:
            func, file = frames[-1]
            self_time[f"{func} ({file})"] += count
        for func, file in {(f, p) for f, p in frames if "machineroom/" in p}:
            inclusive[f"{func} ({file})"] += count

    def seconds(samples: int) -> str:
        return f"{samples / args.rate:7.2f} s {100 * samples / max(total, 1):5.1f} %"

    print(f"{total} samples of running threads = {total / args.rate:.2f} s CPU-ish\n")
    print("By category:")
    for name, count in by_category.most_common():
        print(f"  {seconds(count)}  {name}")
    print("\nBy thread kind:")
    for name, count in by_thread.most_common():
        print(f"  {seconds(count)}  {name}")
    print("\nTop self (leaf) functions:")
    for name, count in self_time.most_common(25):
        print(f"  {seconds(count)}  {name}")
    print("\nTop machineroom functions, inclusive:")
    for name, count in inclusive.most_common(30):
        print(f"  {seconds(count)}  {name}")


if __name__ == "__main__":
    main()
