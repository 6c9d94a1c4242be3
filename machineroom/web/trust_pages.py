"""The dashboard's "Trust this key" form (admins): the key a host presented in an action's
run goes into the project's known_hosts (web/hostkeys.py), then the action's page again.
The action's page (templates/action.html) shows the keys; this module only takes the form."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from machineroom.web import api
from machineroom.web.auth import Principal, check_csrf, require
from machineroom.web.pages import Form

router = APIRouter(include_in_schema=False)
Admin = Annotated[Principal, Depends(require("admin"))]


@router.post("/actions/{action_id}/trust")
def trust_form(request: Request, principal: Admin, action_id: str, form: Form) -> Response:
    """Trust the key the form names (host and the fingerprint shown), then show the action
    again, saying whose key is trusted now."""
    check_csrf(request, principal, form.get("csrf"))
    action_id = action_id[:40]
    done = api.trust_action_key(
        request, principal, action_id, form.get("host", ""), form.get("fingerprint", "")
    )
    return RedirectResponse(
        f"/actions/{quote(action_id)}?trusted={quote(done['host'])}", status_code=303
    )
