"""`get_url`: download a file on the host, as Ansible's module does, with curl or wget.

One sh step on the host (it does the downloading: the controller may not reach the URL):
with `checksum` and `force: no` an existing `dest` whose digest matches is kept without a
request; an existing `dest` without a checksum is asked for with If-Modified-Since (304:
nothing to do); otherwise the body lands in a temp file beside `dest`, is checked against
`checksum`, and `mr_put` (files_sh.py) renames it over `dest` only when its content differs
(backup, mode, owner, group as every file module). curl reads credentials and headers from a
config on stdin, so they never show in the host's process list; wget is the fallback when
curl is missing. In check mode the body goes to a temp file that is removed afterwards, so
`changed` says the truth (Ansible sends a HEAD and guesses).
"""

from __future__ import annotations

import base64
import posixpath
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from machineroom.errors import InputError
from machineroom.modules import files_sh
from machineroom.modules.base import (
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)

ALGORITHMS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")

# After LIBRARY and the settings. $cfg: curl's config (stdin). Reports key=value lines.
BODY = r"""
cfg=$(mktemp) || mr_fail "mktemp failed"; mr_t2=$cfg
cat > "$cfg"
if command -v curl >/dev/null 2>&1; then tool=curl
elif command -v wget >/dev/null 2>&1; then tool=wget
else mr_fail "get_url needs curl or wget on the host; neither is installed"; fi
# mr_get URL FILE [IMS_FILE]: status code in $code, message in $why
mr_get() {
  mr_h=$(mktemp) || mr_fail "mktemp failed"
  # the header itself, not curl's -z: curl -z may drop a 200 body it judges too old
  mr_ims=
  [ -z "${3:-}" ] \
    || mr_ims="If-Modified-Since: $(LC_ALL=C date -u -r "$3" '+%a, %d %b %Y %H:%M:%S GMT')"
  if [ "$tool" = curl ]; then
    code=$(curl -K "$cfg" -sS -L -o "$2" -D "$mr_h" -w '%{http_code}' \
      ${mr_ims:+-H "$mr_ims"} -- "$1" 2>"$mr_h.err"); rc=$?
    why=$(tail -n 1 "$mr_h.err")
  else
    mr_wget -S -O "$2" ${mr_ims:+--header="$mr_ims"} -- "$1" 2>"$mr_h"; rc=$?
    code=$(sed -n 's/^ *HTTP\/[0-9.]* \([0-9][0-9][0-9]\).*/\1/p' "$mr_h" | tail -n 1)
    why=$(grep -v '^ ' "$mr_h" | tail -n 1)
  fi
  disp=$(sed -n 's/^[Cc]ontent-[Dd]isposition:.*filename="\{0,1\}\([^";]*\).*/\1/p' "$mr_h" \
    | tail -n 1 | tr -d '\r')
  rm -f -- "$mr_h" "$mr_h.err"
  [ -n "$code" ] || code=-1
}
mr_sum() { mr_s=$("${1}sum" < "$2") || mr_fail "cannot read $2"; printf '%s' "${mr_s%% *}"; }
if [ -n "$checksum_url" ]; then
  mr_t1=$(mktemp) || mr_fail "mktemp failed"
  mr_get "$checksum_url" "$mr_t1"
  if [ "$code" != 200 ] && { [ "$rc" != 0 ] || [ "${checksum_url#file:}" = "$checksum_url" ]; }
  then mr_fail "cannot download the checksum file $checksum_url: ${why:-HTTP $code}"; fi
  checksum=$(awk -v f="$filename" '
    NF == 1 && NR == 1 { only = $1 }
    NF >= 2 { n = $2; sub(/^\*/, "", n); sub(/^\.\//, "", n); if (n == f) { print $1; exit } }
    END { if (NR == 1 && only != "") print only }' "$mr_t1" | head -n 1 | tr 'A-F' 'a-f')
  rm -f -- "$mr_t1"; mr_t1=
  [ -n "$checksum" ] || mr_fail "Unable to find a checksum for file '$filename' in '$checksum_url'"
fi
dest_is_dir=0; [ -d "$dest" ] && dest_is_dir=1
ims=
if [ "$dest_is_dir" = 0 ] && [ -e "$dest" ]; then
  if [ "$force" = 0 ] && [ -n "$checksum" ]; then
    if [ "$(mr_sum "$algorithm" "$dest")" = "$checksum" ]; then
      mr_say outcome exists
      mr_say checksum_dest "$(mr_sum sha1 "$dest")"
      backup=0
      mr_put "$dest" "$dest"
      exit 0
    fi
    force=1
  fi
  [ "$force" = 1 ] || ims=$dest
fi
# only HTTP answers If-Modified-Since (curl skips a file:// or ftp:// transfer instead)
case $url in [Hh][Tt][Tt][Pp]://*|[Hh][Tt][Tt][Pp][Ss]://*) ;; *) ims= ;; esac
if [ "$dest_is_dir" = 1 ]; then dir=$dest; else dir=${dest%/*}; [ -n "$dir" ] || dir=/; fi
[ -d "$dir" ] || mr_fail "Destination $dir does not exist"
if [ -n "$tmp_dest" ]; then mr_tmp_near "$tmp_dest"; else mr_tmp_near "$dir"; fi
mr_get "$url" "$mr_t1" "$ims"
mr_say status_code "$code"
if [ "$code" = 304 ]; then mr_say outcome not_modified; exit 0; fi
if [ "$rc" != 0 ] || { [ "$code" != 200 ] && [ "${url#file:}" = "$url" ]; }; then
  # a refused connection, a timeout, a short read (curl's exit code), or an HTTP error
  mr_say outcome failed; mr_say rc "$rc"
  mr_say response "$(printf '%s' "$why" | base64 | tr -d '\n')"; exit 0
fi
if [ "$dest_is_dir" = 1 ]; then dest=$dest/${disp:-$filename}; fi
mr_say dest "$(printf '%s' "$dest" | base64 | tr -d '\n')"
mr_say checksum_src "$(mr_sum sha1 "$mr_t1")"
[ ! -e "$dest" ] || mr_say checksum_dest "$(mr_sum sha1 "$dest")"
if [ -n "$checksum" ]; then
  got=$(mr_sum "$algorithm" "$mr_t1")
  [ "$got" = "$checksum" ] || mr_fail "The checksum for $dest did not match $checksum; it was $got."
fi
mr_say outcome downloaded
[ "$CHECK" = 1 ] || mr_say md5sum "$(mr_sum md5 "$mr_t1")"
if [ -e "$dest" ] && cmp -s -- "$mr_t1" "$dest"; then
  backup=0; rm -f -- "$mr_t1"; mr_t1=; mr_put "$dest" "$dest"
else
  mr_put "$mr_t1" "$dest"
fi
"""


def curl_string(value: str) -> str:
    """A value in curl's config syntax: double quotes, backslash escapes."""
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def url_filename(url: str) -> str:
    """The file name a URL gives (Ansible's url_filename): its path's last part."""
    name = posixpath.basename(urlsplit(url).path)
    return name or "index.html"


def mask_url(url: str) -> str:
    """The URL without a password in it, as Ansible reports it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":********@", 1)
    return parts._replace(netloc=netloc).geturl()


def parse_checksum(value: str) -> tuple[str, str, str]:
    """`checksum: sha256:abc...` or `sha256:https://.../SHA256SUMS` as (algorithm, digest,
    checksum file URL)."""
    if not value:
        return "", "", ""
    algorithm, sep, digest = value.partition(":")
    if not sep:
        raise InputError(
            "get_url: The checksum parameter has to be in format <algorithm>:<checksum>",
            expected="like sha256:9f86d081...",
        )
    if algorithm not in ALGORITHMS:
        raise InputError(
            f"get_url: unsupported checksum algorithm {algorithm!r}", expected=", ".join(ALGORITHMS)
        )
    if re.match(r"^[a-z][a-z0-9+.-]*://", digest, re.I):
        return algorithm, "", digest
    digest = re.sub(r"\W+", "", digest).lower()
    if not re.fullmatch(r"[0-9a-f]+", digest):
        raise InputError("get_url: The checksum format is invalid", expected="hex digits")
    return algorithm, digest, ""


def curl_config(args: Mapping[str, Any]) -> str:
    """curl's settings (sent on stdin): credentials, headers, timeouts, TLS."""
    timeout = int(args.get("timeout", 10))
    lines = [
        f"connect-timeout = {timeout}",
        f"speed-time = {timeout}",
        "speed-limit = 1",
        f"user-agent = {curl_string(str(args.get('http_agent') or 'ansible-httpget'))}",
    ]
    if not args.get("validate_certs", True):
        lines.append("insecure")
    if args.get("decompress", True):
        lines.append("compressed")
    if args.get("use_netrc", True):
        lines.append("netrc-optional")
    if not args.get("use_proxy", True):
        lines.append('noproxy = "*"')
    user = args.get("url_username")
    if user:
        password = str(args.get("url_password") or "")
        lines.append(f"user = {curl_string(f'{user}:{password}')}")
    for key, value in (args.get("headers") or {}).items():
        lines.append(f"header = {curl_string(f'{key}: {value}')}")
    return "".join(line + "\n" for line in lines)


def wget_options(args: Mapping[str, Any]) -> str:
    """wget's options, quoted for sh (the fallback: credentials show in the process list)."""
    timeout = int(args.get("timeout", 10))
    words = [f"-T{timeout}", "-U", str(args.get("http_agent") or "ansible-httpget")]
    if not args.get("validate_certs", True):
        words.append("--no-check-certificate")
    if args.get("url_username"):
        words += ["--user", str(args["url_username"])]
        words += ["--password", str(args.get("url_password") or "")]
    for key, value in (args.get("headers") or {}).items():
        words.append(f"--header={key}: {value}")
    return " ".join(quote(w) for w in words)


class GetUrlModule(Module):
    """Download a URL to a file on the host, idempotently."""

    name: ClassVar[str] = "get_url"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "minLength": 1},
            "dest": {"type": "string", "minLength": 1},
            "backup": {"type": "boolean", "default": False},
            "checksum": {"type": "string", "default": ""},
            "force": {"type": "boolean", "default": False},
            "headers": {"type": "object"},
            "url_username": {"type": "string"},
            "url_password": {"type": "string"},
            "force_basic_auth": {"type": "boolean", "default": False},
            "validate_certs": {"type": "boolean", "default": True},
            "use_proxy": {"type": "boolean", "default": True},
            "timeout": {"type": "integer", "default": 10},
            "http_agent": {"type": "string", "default": "ansible-httpget"},
            "tmp_dest": {"type": "string"},
            "decompress": {"type": "boolean", "default": True},
            "use_netrc": {"type": "boolean", "default": True},
            **files_sh.ATTR_PROPS,
        },
        "required": ["url", "dest"],
        "additionalProperties": False,
        "x-aliases": {"username": "url_username", "password": "url_password", "thirsty": "force"},
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep:
        """One script: decide, download into a temp file, install it when it differs."""
        url, dest = str(args["url"]), str(args["dest"])
        algorithm, digest, checksum_url = parse_checksum(str(args.get("checksum") or ""))
        settings = {
            "url": url,
            "dest": dest.rstrip("/") or "/",
            "force": int(bool(args.get("force"))),
            "algorithm": algorithm,
            "checksum": digest,
            "checksum_url": checksum_url,
            "filename": url_filename(url),
            "tmp_dest": args.get("tmp_dest") or "",
            "backup": int(bool(args.get("backup"))),
        }
        script = "".join(
            [
                files_sh.LIBRARY,
                files_sh.common_vars(ctx.check, False, dest),
                files_sh.attr_vars(args),
                files_sh.validate_vars(None),
                *(f"{k}={quote(v)}\n" for k, v in settings.items()),
                f'mr_wget() {{ wget {wget_options(args)} "$@"; }}\n',
                BODY,
            ]
        )
        return RemoteStep(script, stdin=curl_config(args).encode())

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Ansible's result keys: dest, url, checksum_src/_dest, status_code, md5sum."""
        url = mask_url(str(args["url"]))
        if output.exit_code != 0:
            failed = files_sh.failure(output, "get_url")
            return Outcome("failed", msg=failed.msg, result={**failed.result, "url": url})
        report, _ = files_sh.parse_report(output.stdout)
        dest = str(args["dest"])
        if "dest" in report:
            dest = base64.b64decode(report["dest"]).decode("utf-8", "replace")
        result: dict[str, Any] = {
            "url": url,
            "dest": dest,
            "checksum_src": report.get("checksum_src"),
            "checksum_dest": report.get("checksum_dest"),
            "elapsed": 0,
        }
        if "status_code" in report:
            result["status_code"] = int(report["status_code"])
        outcome = report.get("outcome")
        if outcome == "failed":
            response = base64.b64decode(report.get("response", "")).decode("utf-8", "replace")
            if result.get("status_code") in (None, -1, 0, 200):  # no HTTP answer: Ansible's -1
                result["status_code"] = -1
                return Outcome("failed", msg=response or "Request failed", result=result)
            response = response or f"HTTP Error {result['status_code']}"
            return Outcome("failed", msg="Request failed", result={**result, "response": response})
        if outcome == "not_modified":
            return Outcome("ok", msg=f"{dest}: not modified (HTTP 304)", result=result)
        changed, _, attrs = files_sh.file_outcome(
            dest, report, "", check=ctx.check, want_diff=False
        )
        result.update({k: v for k, v in attrs.items() if k in ("mode", "owner", "group")})
        if "backup_file" in attrs:
            result["backup_file"] = attrs["backup_file"]
        if "md5sum" in report:
            result["md5sum"] = report["md5sum"]
        if outcome == "exists":
            msg = "file already exists" + (" but file attributes changed" if changed else "")
            return Outcome("changed" if changed else "ok", msg=msg, result=result)
        if not changed:
            return Outcome("ok", msg=f"{dest} already matches {url}", result=result)
        return Outcome("changed", msg=f"{url} downloaded to {dest}", result=result)
