"""The "env stage" benchmark workload in pyinfra's idiom (pyinfra 3): the same 10 tasks."""

from pathlib import Path

from pyinfra import host
from pyinfra.facts.files import File
from pyinfra.operations import files, server

ROLE = Path(__file__).resolve().parent / "roles" / "env"
MARKER = "/srv/bench/app/data/initialized"

files.directory(name="app folder", path="/srv/bench/app", mode="755")
files.directory(name="conf folder", path="/srv/bench/app/conf", mode="755")
files.directory(name="data folder", path="/srv/bench/app/data", mode="750")
files.put(
    name="motd", src=str(ROLE / "files" / "motd.txt"), dest="/srv/bench/app/motd.txt", mode="644"
)
files.put(
    name="env script",
    src=str(ROLE / "files" / "env.sh"),
    dest="/srv/bench/app/conf/env.sh",
    mode="755",
)
files.template(
    name="app config",
    src=str(ROLE / "templates" / "app.conf.j2"),
    dest="/srv/bench/app/conf/app.conf",
    mode="644",
    app_name="shop",
    app_port=8080,
    env_name="staging",
)
files.line(
    name="log level",
    path="/srv/bench/app/conf/settings",
    line="^LOG_LEVEL=.*",
    replace="LOG_LEVEL=info",
)
files.line(
    name="workers", path="/srv/bench/app/conf/settings", line="^WORKERS=.*", replace="WORKERS=4"
)
# pyinfra has no `creates`: its idiom is a fact checked while the operations are planned
if not host.get_fact(File, path=MARKER):
    server.shell(name="initialise data", commands=[f"touch {MARKER}"])
files.file(name="data marker mode", path=MARKER, mode="600")
