"""Sending an alert to a notifier: a command with the alert as JSON on stdin, or a webhook
receiving it as a JSON POST.

A notifier's failure is returned as a line of text (masked: a webhook URL often holds its
token), never raised: an alert is recorded whether or not anyone could be told. A webhook's
redirect is refused, not followed: urllib would re-send the configured headers (a token) to
wherever it points.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from machineroom.errors import MachineroomError
from machineroom.fleet.alerts_message import mask_url
from machineroom.fleet.alerts_rules import Notifier
from machineroom.masking import mask_data

OUTPUT_TAIL = 300  # characters of a failed command's stderr kept in the error
USER_AGENT = "machineroom-alerts"


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Follow no redirect: the 3xx answer then reaches us as an HTTPError."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


_OPENER = urllib.request.build_opener(_RefuseRedirects)


def alert_payload(
    event: str, row: Any, *, metric: str | None = None, threshold: float | None = None
) -> dict[str, Any]:
    """The JSON document a notifier receives (see docs/alerts.md). `row` is an AlertRow.

    `id` and `event` together name one notification: a receiver that sees the same pair
    twice (a crash between sending and recording it) can drop the second.
    """
    return {
        "source": "machineroom",
        "event": event,
        "id": row.id,
        "rule": row.rule,
        "host": row.host_id,
        "subject": row.subject,
        "severity": row.severity,
        "state": row.state,
        "value": row.value,
        "metric": metric,
        "threshold": threshold,
        "message": row.message,
        "opened_at": row.opened_at,
        "resolved_at": row.resolved_at,
    }


def send(
    notifier: Notifier,
    payload: Mapping[str, Any],
    decrypt: Callable[[str], str] | None = None,
) -> str | None:
    """Send `payload` with `notifier`; None when it worked, else what went wrong."""
    # Secrets the process knows (login passwords seen in a host's error text) stay home.
    body = json.dumps(mask_data(payload), sort_keys=True).encode()
    try:
        if notifier.kind == "command":
            return _run_command(notifier, body)
        return _post(notifier, body, decrypt)
    except MachineroomError as exc:  # an unset !env variable, a vault that cannot open
        return f"notifier {notifier.name}: {exc}"


def _run_command(notifier: Notifier, body: bytes) -> str | None:
    what = f"notifier {notifier.name}"
    try:
        # An argv list, never a shell: nothing in the alert or the file is shell-interpreted.
        result = subprocess.run(
            list(notifier.argv),
            input=body,
            capture_output=True,
            timeout=notifier.timeout,
            cwd=notifier.folder,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"{what}: {notifier.argv[0]} timed out after {notifier.timeout:g}s"
    except OSError as exc:
        return f"{what}: cannot run {notifier.argv[0]}: {exc.strerror or exc}"
    if result.returncode != 0:
        tail = result.stderr.decode(errors="replace").strip()[-OUTPUT_TAIL:]
        return f"{what}: {notifier.argv[0]} exited {result.returncode}" + (
            f": {tail}" if tail else ""
        )
    return None


def _post(notifier: Notifier, body: bytes, decrypt: Callable[[str], str] | None) -> str | None:
    assert notifier.url is not None
    url = notifier.url.reveal(decrypt)
    shown = mask_url(url)
    what = f"notifier {notifier.name} ({shown})"
    if not url.startswith(("http://", "https://")):
        return f"{what}: not an http(s) URL"
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
    secrets = [url]
    for name, value in notifier.headers.items():
        headers[name] = value.reveal(decrypt)
        secrets.append(headers[name])
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with _OPENER.open(request, timeout=notifier.timeout) as response:
            response.read(65536)
    except urllib.error.HTTPError as exc:
        exc.close()
        if 300 <= exc.code < 400:
            # The Location is not shown: it may hold a token as the URL does.
            return f"{what}: HTTP {exc.code} {exc.reason}: redirects are not followed"
        return f"{what}: HTTP {exc.code} {exc.reason}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        text = str(reason)
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return f"{what}: {text}"
    return None
