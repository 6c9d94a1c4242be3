"""The `machineroom` command: one click group, each command family in a file of its own.

Commands are imported lazily (only the one being run), so that `machineroom --help` and every
run start fast. This is the only layer that prints errors and picks exit codes.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from machineroom import __version__
from machineroom.errors import ExitCode, MachineroomError
from machineroom.masking import mask

# command name -> "module:attribute"; aliases point at the same command.
COMMANDS: dict[str, str] = {
    "ls": "machineroom.cli.servers:ls_command",
    "import": "machineroom.cli.servers:import_command",
    "retire": "machineroom.cli.servers:retire_command",
    "forget": "machineroom.cli.servers:forget_command",
    "validate": "machineroom.cli.servers:validate_command",
    "connect": "machineroom.cli.remote:connect_command",
    "run": "machineroom.cli.remote:run_command",
    "inventory": "machineroom.cli.inventory_cmd:inventory_command",
    "scanports": "machineroom.cli.remote:scanports_command",
    "history": "machineroom.cli.servers:history_command",
    "show": "machineroom.cli.runs:show_command",
    "diff": "machineroom.cli.runs:diff_command",
    "vault": "machineroom.cli.vault_cmds:vault_group",
    "lab": "machineroom.cli.lab_cmds:lab_group",
    "explain": "machineroom.cli.explain:explain_command",
    "apply": "machineroom.cli.apply:apply_command",
    "plan": "machineroom.cli.apply:plan_command",
    "facts": "machineroom.cli.facts_cmd:facts_command",
    "scan-docker": "machineroom.cli.docker_cmds:scan_docker_command",
    "add-cert": "machineroom.cli.certs:add_cert_command",
    "collect": "machineroom.cli.fleet_cmds:collect_command",
    "status": "machineroom.cli.fleet_cmds:status_command",
    "metrics": "machineroom.cli.fleet_cmds:metrics_command",
    "alerts": "machineroom.cli.alerts_cmds:alerts_command",
    "scheduler": "machineroom.cli.scheduler_cmds:scheduler_command",
    "serve": "machineroom.cli.web_cmds:serve_command",
    "token": "machineroom.cli.web_cmds:token_group",
    # hidden: how the scheduler and the dashboard start a run (a RunRequest on stdin)
    "run-request": "machineroom.cli.run_request:run_request_command",
}
ALIASES: dict[str, str] = {
    "list": "ls",
    "tell": "ls",
    "update_file": "import",
    "update_conf": "import",
    "updateconfig": "import",
    "scan-ports": "scanports",
    "scandocker": "scan-docker",
    "validation": "scan-docker",
    "valid": "scan-docker",
}


class LazyGroup(click.Group):
    """A click group whose commands are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        name = ALIASES.get(cmd_name, cmd_name)
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command = getattr(importlib.import_module(module_name), attribute)
        assert isinstance(command, click.Command)
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError:
            from machineroom.errors import did_you_mean

            hint = did_you_mean(args[0], [*COMMANDS, *ALIASES]) if args else ""
            ctx.fail(f"no such command '{args[0] if args else ''}'{hint}")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="machineroom")
def cli() -> None:
    """machineroom: inventories, staged playbooks and fleet state, over SSH."""


def _settings_warning(text: str) -> None:
    click.secho(f"warning: {text}", fg="yellow", err=True)


def main(argv: list[str] | None = None) -> Any:
    """Entry point: run the CLI and turn errors into one line and an exit code.

    Called without `argv` (the `machineroom` script, `python -m machineroom`), it ends the
    process itself once the command is done (see `_end_process`)."""
    try:
        _main(argv)
    except SystemExit as exc:
        if argv is None:
            _end_process(exc.code)
        raise


def _end_process(code: object) -> None:
    """Exit with `code` now, skipping the interpreter's teardown: it frees every module and
    object one by one (0.1-0.2 s of CPU once paramiko is loaded) for a
    process about to end. atexit functions still run and output is flushed. Returns, for the
    normal exit, when another non-daemon thread is still alive (Python would wait for it)."""
    import atexit
    import threading

    if not (code is None or isinstance(code, int)):
        return  # a message for SystemExit to print
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):  # a closed pipe or stream: nothing more to say
        pass
    os._exit(code or 0)


def _main(argv: list[str] | None) -> None:
    from machineroom.masking import MaskingWriter

    # Every secret the run learns is masked in whatever reaches the terminal or a pipe.
    if not isinstance(sys.stdout, MaskingWriter):
        sys.stdout = MaskingWriter(sys.stdout)
    if not isinstance(sys.stderr, MaskingWriter):
        sys.stderr = MaskingWriter(sys.stderr)
    from machineroom.runs import settings
    from machineroom.runs.stops import RunAborted, stop_on_signals, stop_reason

    settings.warn = _settings_warning

    try:
        # SIGTERM and SIGHUP stop a command as Ctrl-C does (see runs/stops.py)
        with stop_on_signals():
            cli.main(args=argv, prog_name="machineroom", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except click.UsageError as exc:
        exc.show()
        sys.exit(ExitCode.USAGE)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.ERROR)
    except RunAborted as exc:
        # a second stop signal: the run is marked interrupted; worker threads may still be
        # running, so the process ends at once
        click.echo(f"\n{exc}", err=True)
        os._exit(ExitCode.INTERRUPTED)
    except MachineroomError as exc:
        click.echo(f"error: {mask(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo(stop_reason(), err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        sys.exit(ExitCode.OK)
    except Exception:
        from machineroom.cli.crash import report_bug

        sys.exit(report_bug())
    sys.exit(ExitCode.OK)
