"""The tag rule of `--tags` / `--skip-tags`, as ansible-playbook applies it: shared by the
executor, `plan` and the `--list-tasks` listing."""

from __future__ import annotations


def tags_allow(tags: frozenset[str], wanted: frozenset[str], skipped: frozenset[str]) -> bool:
    """Whether a task with `tags` runs under --tags `wanted` / --skip-tags `skipped`."""
    if tags & skipped or ("tagged" in skipped and tags) or ("untagged" in skipped and not tags):
        return False
    if "always" in tags and "always" not in skipped:
        return True
    if not wanted:
        return "never" not in tags
    if tags & wanted:
        return True
    if "never" in tags:
        return False
    return (
        "all" in wanted
        or ("tagged" in wanted and bool(tags))
        or ("untagged" in wanted and not tags)
    )
