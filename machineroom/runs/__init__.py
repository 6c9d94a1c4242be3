"""The application layer: every command that touches hosts, as a library with no click.

A command builds a `RunRequest` (request.py) or calls a function here with a `Workspace`
(workspace.py: the inventory, the state database, the settings); the run goes through the
one recorded-run session (session.py) and comes back as a `RunResult`. The CLI, the
scheduler and the dashboard only render what comes back. See docs/architecture.md.
"""
