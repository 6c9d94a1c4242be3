"""`machineroom vault ...`: encrypt, decrypt, view and edit vault files; encrypt single values.

The cryptography lives in `machineroom.vault`, the file work (checks, atomic rewrites, the
editor's private scratch copy) in `machineroom.runs.vault_files`; this file only asks for
passwords and values, and prints. Errors are raised as MachineroomError for `cli.main` to print.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from machineroom.errors import UsageError
from machineroom.runs.vault_files import (
    ANSIBLE_PASSWORD_FILE_ENV,
    FORMATS,
    PASSWORD_ENV,
    VaultKey,
    check_editable,
    check_encrypted,
    check_plain,
    decrypt_files,
    decrypt_for_rekey,
    edit_file,
    encrypt_files,
    encrypt_value,
    new_vault_key,
    vault_key,
    view_file,
    write_rekeyed,
)

F = TypeVar("F", bound=Callable[..., Any])


def password_options(func: F) -> F:
    """The options every vault command shares: where the vault password comes from."""
    func = click.option(
        "--vault-id",
        "vault_ids",
        multiple=True,
        expose_value=False,
        callback=_remember_vault_ids,
        help="[LABEL@]FILE or LABEL@prompt, as ansible-vault's: repeatable to decrypt; "
        "one to encrypt with (--format ansible writes its LABEL in the 1.2 header).",
    )(func)
    func = click.option(
        "--ask-vault-password",
        "--ask-vault-pass",
        "ask",
        is_flag=True,
        help="Prompt for the vault password (even when a file or the variable gives one).",
    )(func)
    func = click.option(
        "--vault-password-file",
        "password_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"Read the password from the first line of FILE (mode 600), or run FILE if it "
        f"is executable. Else ${PASSWORD_ENV}, else ${ANSIBLE_PASSWORD_FILE_ENV}, else a "
        "prompt on a terminal.",
    )(func)
    return func


def format_option(func: F) -> F:
    """`--format`: write our format (default) or ansible-vault's 1.1."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default="machineroom",
        show_default=True,
        help="machineroom (scrypt, AES-GCM) or ansible (ansible-vault 1.1, readable by Ansible).",
    )(func)


def _prompt(text: str) -> str:
    value: str = click.prompt(text, hide_input=True, err=True)
    return value


def _prompt_new(text: str) -> str:
    """Ask twice when choosing a password to encrypt with: a typo would lock the data away."""
    value: str = click.prompt(
        f"New {text.lower()}", hide_input=True, confirmation_prompt=True, err=True
    )
    return value


def _remember_vault_ids(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta["vault_ids"] = tuple(value)
    return value


def get_key(password_file: Path | None, ask: bool, *, new: bool = False) -> VaultKey:
    """A VaultKey from --vault-password-file, $MACHINEROOM_VAULT_PASSWORD or a prompt, or
    from --vault-id options (a ring of keys).

    A prompt happens when asked for, or when nothing else gives a password and stdin is a
    terminal; a script without a terminal gets an error naming the three ways instead.
    """
    vault_ids: tuple[str, ...] = click.get_current_context().meta.get("vault_ids", ())
    prompt = None
    if ask or sys.stdin.isatty():
        prompt = _prompt_new if new else _prompt
    return vault_key(password_file, ask, vault_ids, prompt, new=new)


@click.group("vault")
def vault_group() -> None:
    """Encrypt secrets: whole files, or single values for inventories (`!vault |`).

    The password comes from --vault-password-file, $MACHINEROOM_VAULT_PASSWORD, or a prompt.
    """


@vault_group.command("encrypt")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@format_option
@password_options
def encrypt_command(
    files: tuple[Path, ...], fmt: str, password_file: Path | None, ask: bool
) -> None:
    """Encrypt FILES in place (each keeps its mode; written atomically)."""
    check_plain(files)  # every file, before asking for a password or changing any
    key = get_key(password_file, ask, new=True)
    for path in encrypt_files(files, key, fmt):
        click.echo(
            f"encrypted {path}" + (" (ansible-vault format)" if fmt == "ansible" else ""), err=True
        )


@vault_group.command("decrypt")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@password_options
def decrypt_command(files: tuple[Path, ...], password_file: Path | None, ask: bool) -> None:
    """Decrypt FILES in place (each keeps its mode; written atomically)."""
    check_encrypted(files)
    key = get_key(password_file, ask)
    # every file is decrypted before any is written: a wrong password changes nothing
    for path in decrypt_files(files, key):
        click.echo(f"decrypted {path}", err=True)


@vault_group.command("view")
@click.argument("file", type=click.Path(path_type=Path))
@password_options
def view_command(file: Path, password_file: Path | None, ask: bool) -> None:
    """Print the plaintext of an encrypted FILE to stdout."""
    key = get_key(password_file, ask)
    data = view_file(file, key)
    out = sys.stdout.buffer
    out.write(data)
    out.flush()


@vault_group.command("edit")
@click.argument("file", type=click.Path(path_type=Path))
@format_option
@password_options
def edit_command(file: Path, fmt: str, password_file: Path | None, ask: bool) -> None:
    """Edit an encrypted FILE with $VISUAL/$EDITOR; a missing FILE is created (in --format).

    An existing FILE keeps its format, ours or ansible-vault's.

    The plaintext lives only in a private temporary folder (mode 700, in RAM when /dev/shm
    exists), is overwritten and removed afterwards, and FILE is rewritten only if it changed.
    """
    exists = check_editable(file)
    key = get_key(password_file, ask, new=not exists)
    outcome = edit_file(file, key, fmt)
    if outcome == "unchanged":
        click.echo(f"{file}: no changes; not rewritten", err=True)
        return
    click.echo(f"{outcome} {file}", err=True)


@vault_group.command("encrypt-string")
@click.argument("value", required=False)
@click.option("--name", "-n", default=None, help="Print `NAME: !vault |` ready to paste.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the value from stdin.")
@click.option(
    "--oneline",
    is_flag=True,
    help="One line, no newlines: for the server-list format or a plain YAML string.",
)
@format_option
@password_options
def encrypt_string_command(
    value: str | None,
    name: str | None,
    from_stdin: bool,
    oneline: bool,
    fmt: str,
    password_file: Path | None,
    ask: bool,
) -> None:
    """Encrypt one VALUE for an inventory or vars file.

    Without VALUE or --stdin, asks for it on a terminal (nothing lands in shell history).
    One trailing newline of stdin is dropped. Each value has its own salt, so each costs one
    key derivation (~0.1 s) to encrypt and to decrypt.
    """
    if value is not None and from_stdin:
        raise UsageError("give VALUE or --stdin, not both")
    if oneline and fmt == "ansible":
        raise UsageError(
            "--oneline is not possible with --format ansible (it has no one-line form)"
        )
    if value is None:
        if from_stdin or not sys.stdin.isatty():
            value = sys.stdin.read()
            value = value[:-1] if value.endswith("\n") else value
            value = value[:-1] if value.endswith("\r") else value
        else:
            value = click.prompt(
                "Value to encrypt", hide_input=True, confirmation_prompt=True, err=True
            )
    if not value:
        raise UsageError("nothing to encrypt: the value is empty")
    key = get_key(password_file, ask, new=True)
    text = encrypt_value(value, key, oneline, fmt)
    click.echo(render_encrypted_value(text, name, oneline))


@vault_group.command("rekey")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--new-vault-password-file",
    "new_password_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Read the new password from FILE; else a prompt (asked twice).",
)
@password_options
def rekey_command(
    files: tuple[Path, ...],
    new_password_file: Path | None,
    password_file: Path | None,
    ask: bool,
) -> None:
    """Re-encrypt FILES under a new password, each keeping its format."""
    check_encrypted(files)
    key = get_key(password_file, ask)
    # Decrypt everything with the old password first: a wrong one changes nothing.
    plain = decrypt_for_rekey(files, key)
    if new_password_file is None and not sys.stdin.isatty():
        raise UsageError("give --new-vault-password-file (stdin is not a terminal)")
    new_key = new_vault_key(new_password_file, _prompt_new)
    for path in write_rekeyed(plain, new_key):
        click.echo(f"rekeyed {path}", err=True)


def render_encrypted_value(text: str, name: str | None, oneline: bool) -> str:
    """Format vault text for pasting: `NAME: !vault |` + indented block, or the one-line form."""
    prefix = f"{name}: " if name else ""
    if oneline:
        return prefix + text
    block = "\n".join("  " + line for line in text.rstrip("\n").split("\n"))
    return f"{prefix}!vault |\n{block}"
