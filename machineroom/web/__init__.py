"""The web dashboard and JSON API served by `machineroom serve`.

`app.create_app(WebConfig)` builds the FastAPI application; only this package imports
fastapi/starlette, and nothing outside `machineroom.cli.web_cmds` imports this package, so
the rest of the CLI starts without them.
"""
