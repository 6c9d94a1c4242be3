"""`uri`: an HTTP request made from the host, as Ansible's `ansible.builtin.uri`, with curl.

One remote command: the request (URL, method, headers, credentials, body) goes to curl as a
config file on stdin (`curl -K`), so no user value and no password ever sits on a command
line (where `ps` would show it); curl writes the body and the headers into a private temp
folder, the script prints them back base64-encoded when the result needs them (JSON, a
`return_content`, an unexpected status), and copies the body into `dest` when asked. The
result carries Ansible's keys: `status`, `url`, `redirected`, `msg`, `elapsed`, `cookies`,
`cookies_string`, every response header lower-cased with `-` as `_` (`content_type`,
`content_length`, ...), `json` for a JSON body, `content` with `return_content`, `path`
with `dest`. Like Ansible's, a `dest` that exists is asked for with If-Modified-Since, so a
second download answers 304 (list 304 in `status_code` to accept it), and a `dest` written
reports changed. Check mode skips the task, as Ansible's (uri does not support it).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from machineroom.errors import InputError
from machineroom.modules.base import (
    CommandOutput,
    Module,
    ModuleContext,
    Outcome,
    RemoteStep,
    quote,
)
from machineroom.modules.files_sh import FAIL_MARKER, failure, parse_mode, parse_report

SKIP = "__machineroom_skip__"
REDIRECTS = ("all", "no", "none", "safe", "urllib2", "yes")
JSON_CANDIDATES = ("json", "javascript")

# $codes: the accepted statuses; $want: send the body back; $dest/$mode/$owner/$group.
BODY = r"""set -f
mr_fail() { printf '%s%s\n' "$FAIL_MARKER" "$*" >&2; exit 1; }
mr_b64() { base64 -w0; }
command -v curl >/dev/null 2>&1 || mr_fail "uri runs curl on the host, and curl is not \
installed there: install it first (e.g. apt-get install curl, or the package module)"
mr_d=$(mktemp -d) || mr_fail "cannot create a temporary folder"
trap 'rm -rf -- "$mr_d"' EXIT
mr_umask=$(umask)
cat > "$mr_d/config" || mr_fail "cannot write the request into $mr_d"
set --
if [ -n "$dest" ] && [ -f "$dest" ]; then set -- -z "$dest"; fi
mr_w=$(curl -K "$mr_d/config" -sS -o "$mr_d/body" -D "$mr_d/headers" \
  -w '%{http_code} %{num_redirects} %{time_total}\n%{url_effective}\n%{content_type}' \
  "$@" 2>"$mr_d/err")
mr_rc=$?
echo "curl_rc=$mr_rc"
printf 'write=%s\n' "$(printf '%s' "$mr_w" | mr_b64)"
printf 'err=%s\n' "$(mr_b64 < "$mr_d/err")"
[ -f "$mr_d/headers" ] && printf 'headers=%s\n' "$(mr_b64 < "$mr_d/headers")"
[ -f "$mr_d/body" ] || : > "$mr_d/body"
mr_code=${mr_w%% *}
case " $codes " in *" $mr_code "*) mr_ok=1 ;; *) mr_ok=0 want=1 ;; esac
case "$mr_w" in *json*|*javascript*) want=1 ;; esac
case "$mr_code" in 2??) ;; *) want=1 ;; esac  # Ansible keeps an error's body
[ "$want" = 1 ] && printf 'body=%s\n' "$(mr_b64 < "$mr_d/body")"
if [ -n "$dest" ] && [ "$mr_rc" = 0 ] && [ "$mr_ok" = 1 ] && [ "$mr_code" != 304 ]; then
  mr_t=$dest
  if [ -d "$dest" ]; then
    mr_u=$(printf '%s\n' "$mr_w" | sed -n 2p); mr_u=${mr_u%%[?#]*}; mr_n=${mr_u##*/}
    mr_t=${dest%/}/${mr_n:-index.html}
  fi
  if ! cmp -s -- "$mr_d/body" "$mr_t"; then
    mr_dir=$(dirname -- "$mr_t")
    mr_tmp=$(mktemp -- "$mr_dir/.machineroom.XXXXXXXX") || mr_fail "cannot write into $mr_dir"
    cat -- "$mr_d/body" > "$mr_tmp" || { rm -f -- "$mr_tmp"; mr_fail "cannot write $mr_tmp"; }
    if [ -e "$mr_t" ]; then chmod "$(stat -L -c %a -- "$mr_t")" "$mr_tmp"
    else chmod "$(printf '%o' $(( 0666 & ~0$mr_umask )))" "$mr_tmp"; fi
    mv -f -- "$mr_tmp" "$mr_t" || { rm -f -- "$mr_tmp"; mr_fail "cannot write $mr_t"; }
  fi
  if [ -n "$mode" ]; then chmod "$mode" "$mr_t" || mr_fail "cannot chmod $mode $mr_t"; fi
  if [ -n "$owner" ]; then chown -- "$owner" "$mr_t" || mr_fail "cannot chown $owner"; fi
  if [ -n "$group" ]; then chgrp -- "$group" "$mr_t" || mr_fail "cannot chgrp $group"; fi
  printf 'path=%s\n' "$(printf '%s' "$mr_t" | mr_b64)"
fi
exit 0
"""


def conf_line(key: str, value: object = None) -> str:
    """One line of a curl config file; the value double-quoted with curl's escapes."""
    if value is None:
        return key + "\n"
    text = str(value)
    for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        text = text.replace(raw, escaped)
    text = text.replace("\v", "\\v")
    return f'{key} = "{text}"\n'


def request_body(args: Mapping[str, Any], headers: dict[str, str]) -> str | None:
    """The body as text, encoded as `body_format` says; sets Content-Type as Ansible does."""
    body = args.get("body")
    body_format = str(args.get("body_format") or "raw").lower()
    has_type = any(name.lower() == "content-type" for name in headers)
    if body_format == "json":
        if not has_type:
            headers["Content-Type"] = "application/json"
        if body is None:
            return None
        return body if isinstance(body, str) else json.dumps(body)
    if body_format == "form-urlencoded":
        if not has_type:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if body is None or isinstance(body, str):
            return body
        pairs = body.items() if isinstance(body, Mapping) else body
        fields: list[tuple[str, str]] = []
        try:
            for key, values in pairs:
                if isinstance(values, str) or not isinstance(values, list | tuple):
                    values = [values]
                fields += [(str(key), str(v)) for v in values if v is not None]
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"uri: failed to parse body as form_urlencoded: {exc}",
                expected="a mapping or a list of [key, value] pairs",
            ) from None
        return urlencode(fields, doseq=True)
    if body_format == "form-multipart":
        raise InputError(
            "uri: body_format form-multipart is not supported by machineroom's uri",
            expected="json, form-urlencoded or raw",
        )
    if body is None or isinstance(body, str):
        return body
    if isinstance(body, bool | int | float):
        return str(body)
    raise InputError(
        "uri: body is a mapping or list but body_format is raw",
        expected="body_format: json (or form-urlencoded), or a string body",
    )


def curl_config(args: Mapping[str, Any]) -> str:
    """The curl config (sent on stdin) for this request."""
    method = str(args.get("method") or "GET").upper()
    headers = {str(k): str(v) for k, v in (args.get("headers") or {}).items()}
    body = request_body(args, headers)
    lines = [conf_line("url", args["url"])]
    if method == "HEAD":
        lines.append(conf_line("head"))
    elif method not in ("GET", "POST") or (method == "POST" and body is None):
        lines.append(conf_line("request", method))
    elif method == "GET" and body is not None:
        lines.append(conf_line("request", "GET"))
    if args.get("src"):
        if not args.get("remote_src"):
            raise InputError(
                "uri: src from the workstation is not supported by machineroom's uri",
                expected="remote_src: true (a file on the host), or body: "
                "\"{{ lookup('file', 'x.json') }}\"",
            )
        if body is not None:
            raise InputError("uri: parameters are mutually exclusive: body|src")
        lines.append(conf_line("data-binary", "@" + str(args["src"])))
        if method in ("GET", "POST"):
            lines.append(conf_line("request", method))
    if body is not None:
        lines.append(conf_line("data-raw", body))
    follow = str(args.get("follow_redirects") or "safe")
    if follow in ("all", "yes", "urllib2") or (follow == "safe" and method in ("GET", "HEAD")):
        lines += [conf_line("location"), conf_line("max-redirs", 10)]
    if not any(name.lower() == "user-agent" for name in headers):
        headers["User-Agent"] = str(args.get("http_agent") or "ansible-httpget")
    for name, value in headers.items():
        lines.append(conf_line("header", f"{name}: {value}"))
    user = args.get("url_username")
    if user is not None:
        lines.append(conf_line("user", f"{user}:{args.get('url_password') or ''}"))
        lines.append(conf_line("basic" if args.get("force_basic_auth") else "anyauth"))
    if not args.get("validate_certs", True):
        lines.append(conf_line("insecure"))
    if args.get("ca_path"):
        lines.append(conf_line("cacert", args["ca_path"]))
    if args.get("unix_socket"):
        lines.append(conf_line("unix-socket", args["unix_socket"]))
    if not args.get("use_proxy", True):
        lines.append(conf_line("noproxy", "*"))
    if args.get("decompress", True):
        # decode a compressed answer, but ask as urllib (Ansible) asks: identity
        lines.append(conf_line("compressed"))
        if not any(name.lower() == "accept-encoding" for name in headers):
            lines.append(conf_line("header", "Accept-Encoding: identity"))
    timeout = int(args.get("timeout", 30))
    # Ansible's timeout is a socket timeout: no connection, or no byte, for that long
    lines += [
        conf_line("connect-timeout", timeout),
        conf_line("speed-limit", 1),
        conf_line("speed-time", timeout),
    ]
    return "".join(lines)


def status_codes(args: Mapping[str, Any]) -> list[int]:
    """`status_code` as a list of ints (one int, a list, or "200,201")."""
    value = args.get("status_code", [200])
    values = value if isinstance(value, list) else [value]
    try:
        return [int(v) for v in values]
    except (TypeError, ValueError):
        raise InputError(
            f"uri: status_code {value!r} is not a list of numbers", expected="e.g. [200, 201]"
        ) from None


def mask_url(url: str) -> str:
    """The URL with a password in it replaced by ********, as Ansible's mask_url."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":********@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def parse_headers(text: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """curl's -D dump -> (status line, last response's headers lower-cased (repeats joined
    with ", "), cookies set along the way)."""
    blocks: list[list[str]] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith("HTTP/"):
            blocks.append([line])
        elif line and blocks:
            blocks[-1].append(line)
    final = [b for b in blocks if not re.match(r"HTTP/\S+ 1\d\d", b[0])] or blocks or [[""]]
    cookies: dict[str, str] = {}
    for block in final:
        for line in block[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "set-cookie":
                pair = value.strip().split(";", 1)[0]
                key, eq, val = pair.partition("=")
                if eq:
                    cookies[key.strip()] = val.strip()
    headers: dict[str, str] = {}
    for line in final[-1][1:]:
        name, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = name.strip().lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return final[-1][0], headers, cookies


def _decoded(text: str) -> bytes:
    try:
        return base64.b64decode(text)
    except (binascii.Error, ValueError):
        return b""


def _content_type(value: str) -> tuple[str, str, str]:
    """(main type, sub type, charset) of a Content-Type value."""
    kind, _, params = value.partition(";")
    main, _, sub = kind.strip().lower().partition("/")
    charset = "utf-8"
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val.strip():
            charset = val.strip().strip('"')
    return main, sub, charset


class UriModule(Module):
    """`uri`: url, method, body, body_format, headers, status_code, return_content, dest,
    url_username/url_password, force_basic_auth, validate_certs, timeout, follow_redirects,
    creates, removes, src with remote_src, http_agent, ca_path, unix_socket, use_proxy,
    decompress, mode/owner/group (of dest)."""

    name: ClassVar[str] = "uri"
    schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "url": {"type": "string", "minLength": 1},
            "method": {"type": "string", "pattern": "^[A-Za-z]+$", "default": "GET"},
            "body": {},
            "body_format": {
                "enum": ["json", "form-urlencoded", "raw", "form-multipart"],
                "default": "raw",
            },
            "headers": {"type": "object", "default": {}},
            "status_code": {
                "type": ["array", "integer"],
                "items": {"type": "integer"},
                "default": [200],
            },
            "return_content": {"type": "boolean", "default": False},
            "dest": {"type": "string"},
            "url_username": {"type": "string"},
            "url_password": {"type": "string"},
            "force_basic_auth": {"type": "boolean", "default": False},
            "validate_certs": {"type": "boolean", "default": True},
            "timeout": {"type": "integer", "minimum": 1, "default": 30},
            "follow_redirects": {"enum": list(REDIRECTS), "default": "safe"},
            "creates": {"type": "string"},
            "removes": {"type": "string"},
            "src": {"type": "string"},
            "remote_src": {"type": "boolean", "default": False},
            "http_agent": {"type": "string", "default": "ansible-httpget"},
            "ca_path": {"type": "string"},
            "unix_socket": {"type": "string"},
            "use_proxy": {"type": "boolean", "default": True},
            "decompress": {"type": "boolean", "default": True},
            "mode": {"type": ["string", "integer"]},
            "owner": {"type": "string"},
            "group": {"type": "string"},
        },
        "required": ["url"],
        "additionalProperties": False,
        "x-aliases": {"user": "url_username", "password": "url_password"},
    }

    def build(self, args: Mapping[str, Any], ctx: ModuleContext) -> RemoteStep | None:
        """The request on stdin, the script around curl; None (skipped) in check mode."""
        config = curl_config(args)  # errors in the arguments show in check mode too
        codes = status_codes(args)
        if ctx.check:
            return None
        mode, _symbolic = parse_mode(args.get("mode"))
        lines = [
            f"FAIL_MARKER={quote(FAIL_MARKER)}",
            f"codes={quote(' '.join(str(c) for c in codes))}",
            f"want={int(bool(args.get('return_content')))}",
            f"dest={quote(args.get('dest') or '')} mode={quote(mode)}",
            f"owner={quote(args.get('owner') or '')} group={quote(args.get('group') or '')}",
        ]
        for key, negate in (("creates", ""), ("removes", "!")):
            if args.get(key):
                lines.append(
                    f"if {negate} [ -e {quote(args[key])} ]; then cat >/dev/null; "
                    f"echo {SKIP} {key}; exit 0; fi"
                )
        return RemoteStep("\n".join(lines) + "\n" + BODY, stdin=config.encode())

    def run_local(self, args: Mapping[str, Any], ctx: ModuleContext) -> Outcome:
        """Check mode: skipped, as Ansible skips a module without check mode support."""
        return Outcome(
            "ok", msg="remote module (uri) does not support check mode", result={"skipped": True}
        )

    def interpret(
        self, args: Mapping[str, Any], ctx: ModuleContext, output: CommandOutput
    ) -> Outcome:
        """Ansible's result keys; failed when the status is not in `status_code`."""
        first = output.stdout.split("\n", 1)[0]
        if output.exit_code == 0 and first.startswith(SKIP + " "):
            key = first.split(" ", 1)[1]
            why = "exists" if key == "creates" else "does not exist"
            said = f"skipped, since '{args[key]}' {why}"
            return Outcome("ok", msg=said, result={"stdout": said})
        if output.exit_code != 0:
            return failure(output, "uri")
        report, _ = parse_report(output.stdout)
        url = str(args["url"])
        masked = mask_url(url)
        codes = status_codes(args)
        write = _decoded(report.get("write", "")).decode("utf-8", "replace").split("\n")
        numbers = [*write[0].split(), "000", "0", "0"][:3]
        effective = write[1] if len(write) > 1 and write[1] else url
        curl_error = _decoded(report.get("err", "")).decode("utf-8", "replace").strip()
        result: dict[str, Any] = {"url": masked, "status": -1, "changed": False}
        if report.get("curl_rc") != "0" and numbers[0] in ("000", "0"):
            result["elapsed"] = int(float(numbers[2] or 0))
            result["redirected"] = False
            msg = f"Request failed: {curl_error or 'curl exit code ' + report.get('curl_rc', '?')}"
            if -1 not in codes:
                return Outcome(
                    "failed", msg=f"Status code was -1 and not {codes}: {msg}", result=result
                )
            return Outcome("ok", msg=msg, result=result)
        status = int(numbers[0])
        status_line, headers, cookies = parse_headers(
            _decoded(report.get("headers", "")).decode("latin-1")
        )
        response: dict[str, Any] = {}
        response.update(headers)
        if 200 <= status < 300:  # urllib's error path (Ansible) records no cookies
            response["cookies_string"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
            response["cookies"] = cookies
        reason = status_line.split(" ", 2)[2] if status_line.count(" ") >= 2 else ""
        if 200 <= status < 300:
            response["msg"] = f"OK ({headers.get('content-length', 'unknown')} bytes)"
        else:
            response["msg"] = f"HTTP Error {status}: {reason}"
        response["url"] = mask_url(effective)
        response["status"] = status
        response["redirected"] = response["url"] != masked
        response["elapsed"] = int(float(numbers[2] or 0))
        changed = "path" in report
        if args.get("dest") is not None:
            written = _decoded(report["path"]).decode() if changed else str(args["dest"])
            response["path"] = written
        result = {key.replace("-", "_").lower(): value for key, value in response.items()}
        result["changed"] = changed
        if "location" in result:
            result["location"] = urljoin(masked, str(result["location"]))
        _main, sub, charset = _content_type(headers.get("content-type", "application/octet-stream"))
        sub_type = sub.partition("+")[2] if "+" in sub else sub
        content: str | None = None
        if "body" in report:
            if output.stdout_not_kept:
                return Outcome(
                    "failed",
                    msg="uri: the response body was too large to send back "
                    f"({output.stdout_not_kept} bytes not kept): use dest",
                    result=result,
                )
            try:
                content = _decoded(report["body"]).decode(charset, "replace")
            except LookupError:
                content = _decoded(report["body"]).decode("utf-8", "replace")
            if sub_type in JSON_CANDIDATES:
                with contextlib.suppress(ValueError):  # not JSON after all: no `json` key
                    result["json"] = json.loads(content)
        json_like = sub_type in JSON_CANDIDATES
        unread = not (json_like or args.get("return_content"))
        if not 200 <= status < 300 and unread and status in codes:
            # Ansible leaves an accepted error status's body in `body`
            result["body"] = content if content is not None else ""
        if args.get("return_content"):
            result["content"] = content if content is not None else ""
        if status not in codes:
            msg = f"Status code was {status} and not {codes}: {response['msg']}"
            result["msg"] = msg
            return Outcome("failed", msg=msg, result=result)
        return Outcome("changed" if changed else "ok", msg=str(response["msg"]), result=result)
