"""`raw`, `script`, `uri`, `git`, `apt_key`, `apt_repository`, `deb822_repository`, `getent`,
`pause` and `ping` as Ansible roles use them, end to end on lab host h22.

Real runs of `machineroom apply` (a subprocess), in paths of their own (/tmp/mr-netmods and
/etc/apt/sources.list.d files named mr-netmods*): results registered and shown with
`to_json`, the host's files read back, a second run changing nothing where the module is
idempotent, check mode changing nothing. `uri` talks to an HTTP server this test starts on
a loopback address; `git` clones a bare repository the test makes on the host.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from machineroom.lab import Lab
from tests.clirun import machineroom

HOST = "h22"


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def address_of(lab: Lab) -> str:
    return next(h.address for h in lab.hosts if h.name == HOST)


def setup(root: Path, lab: Lab, site: str) -> None:
    write(
        root,
        "inventory.yml",
        f"all:\n  vars: {{ssh_key: {lab.key}}}\n"
        f"  hosts:\n    {HOST}: {{host: {address_of(lab)}, user: root}}\n",
    )
    (root / ".machineroom").mkdir(mode=0o700, exist_ok=True)
    (root / ".machineroom" / "known_hosts").write_text(Path(lab.known_hosts).read_text())
    write(root, "site.yml", site)


def apply(root: Path, *args: str) -> tuple[Any, Any]:
    out = machineroom("apply", "-i", "inventory.yml", "site.yml", "--json", *args, cwd=root)
    try:
        return out, json.loads(out.stdout)
    except json.JSONDecodeError:
        return out, None


def sh(lab: Lab, command: str) -> str:
    """A command's stdout on the host, through OpenSSH (cheaper than a machineroom run)."""
    out = subprocess.run(
        ["ssh", "-F", lab.ssh_config, HOST, command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return out.stdout


def tasks_of(report: Any) -> dict[str, Any]:
    return {t["task"]: t for t in report["hosts"][HOST]["tasks"]}


def changed_tasks(report: Any) -> list[str]:
    return [t["task"] for t in report["hosts"][HOST]["tasks"] if t["status"] == "changed"]


def shown(report: Any, task: str = "show") -> Any:
    """The registered results a `debug: msg: "{{ {...} | to_json }}"` task printed."""
    return json.loads(tasks_of(report)[task]["msg"])


# --- raw and script ---------------------------------------------------------------------


RAW_AND_SCRIPT = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: raw line
      raw: mkdir -p /tmp/mr-netmods/{{ where }}; echo "hi $((40 + 2))"; echo err >&2
      register: r_line
    - name: raw executable
      raw: echo "$0"
      args: {executable: /bin/bash}
      register: r_exec
    - name: raw fails
      raw: exit 3
      register: r_fail
      ignore_errors: true
    - name: script
      script: probe.sh "two words" second creates=/tmp/mr-netmods/{{ where }}/probe.out
      args: {chdir: "/tmp/mr-netmods/{{ where }}"}
      register: s_args
    - name: role script
      include_role: {name: tools}
    - name: show
      debug:
        msg: "{{ {'line': r_line, 'exec': r_exec, 'fail': r_fail, 'script': s_args,
                  'bash': s_bash} | to_json }}"
"""


def test_raw_and_script_run_on_the_host_as_ansible_runs_them(tmp_path: Path, lab: Lab) -> None:
    setup(tmp_path, lab, RAW_AND_SCRIPT)
    write(
        tmp_path,
        "files/probe.sh",
        """\
        #!/bin/sh
        echo "$1|$2|$(pwd)" > probe.out
        echo "to stderr" >&2
        echo "args: $#"
        """,
    )
    # a role's files/ is searched first; executable runs it (a bashism proves bash ran it)
    write(
        tmp_path,
        "roles/tools/tasks/main.yml",
        """\
        - name: bash script
          script: "tool.sh {{ where }}"
          args: {executable: /bin/bash, removes: "/tmp/mr-netmods/{{ where }}/probe.out"}
          register: s_bash
        """,
    )
    write(tmp_path, "roles/tools/files/tool.sh", 'x=(a b c); echo "${#x[@]} $1 $0"\n')

    out, report = apply(tmp_path, "-e", "where=run")
    assert out.returncode == 0, out.stdout + out.stderr
    results = shown(report)
    line = results["line"]
    assert (line["rc"], line["stdout"], line["stderr"]) == (0, "hi 42\n", "err\n")
    assert line["stdout_lines"] == ["hi 42"] and line["changed"] is True
    assert results["exec"]["stdout"] == "/bin/bash\n"
    assert results["fail"]["rc"] == 3 and results["fail"]["msg"] == "non-zero return code"
    script = results["script"]
    assert (script["rc"], script["stdout"], script["stderr"]) == (0, "args: 2\n", "to stderr\n")
    assert sh(lab, "cat /tmp/mr-netmods/run/probe.out") == "two words|second|/tmp/mr-netmods/run\n"
    bash = results["bash"]["stdout"].split()
    assert bash[:2] == ["3", "run"] and bash[2].endswith("/tool.sh")
    # the script was removed again with its private folder
    assert sh(lab, f"ls -d {bash[2]} $(dirname {bash[2]}) 2>&1 || true").count("No such") == 2

    # creates skips the script now; raw runs again (always changed, as in Ansible)
    again, report = apply(tmp_path, "-e", "where=run")
    assert again.returncode == 0, again.stdout + again.stderr
    tasks = tasks_of(report)
    assert tasks["script"]["status"] == "skipped"
    assert "probe.out exists, matching creates option" in tasks["script"]["msg"]


# --- uri ---------------------------------------------------------------------------------

FILE_BODY = b"downloaded content\n"
FILE_TIME = 1_700_000_000
ARMORED_KEY = (
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot really a key\n-----END PGP PUBLIC KEY BLOCK-----\n"
)


class Handler(BaseHTTPRequestHandler):
    """Echoes requests as JSON; /redirect, /auth (basic), /file.txt (If-Modified-Since),
    /missing (404)."""

    def log_message(self, *args: Any) -> None:
        pass

    def _send(
        self,
        status: int,
        body: bytes = b"",
        ctype: str = "text/plain",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _echo(self) -> None:
        size = int(self.headers.get("Content-Length") or 0)
        data = {
            "method": self.command,
            "path": self.path,
            "body": self.rfile.read(size).decode(),
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }
        cookie = ("Set-Cookie", "session=abc; Path=/")
        self._send(200, json.dumps(data).encode(), "application/json", (cookie,))

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self._send(302, headers=(("Location", "/echo?from=redirect"),))
        elif self.path == "/auth":
            wanted = "Basic " + base64.b64encode(b'alice:s3cr"et').decode()
            if self.headers.get("Authorization", "") != wanted:
                self._send(401, b"no", headers=(("WWW-Authenticate", 'Basic realm="t"'),))
            else:
                self._send(200, b'{"user": "alice"}', "application/json")
        elif self.path == "/file.txt":
            since = self.headers.get("If-Modified-Since")
            if since and parsedate_to_datetime(since).timestamp() >= FILE_TIME:
                self._send(304)
            else:
                modified = ("Last-Modified", formatdate(FILE_TIME, usegmt=True))
                self._send(200, FILE_BODY, headers=(modified,))
        elif self.path == "/key.asc":
            self._send(200, ARMORED_KEY.encode())
        elif self.path == "/missing":
            self._send(404, b"not here")
        else:
            self._echo()

    do_POST = do_PUT = do_DELETE = _echo


@pytest.fixture
def web(lab: Lab) -> Iterator[str]:
    """An HTTP server on a loopback address beside the lab's; its base URL."""
    address = address_of(lab).rsplit(".", 1)[0] + ".250"
    server = ThreadingHTTPServer((address, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{address}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def closed_port(address: str) -> int:
    """A port on `address` with nothing listening."""
    with socket.socket() as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


URI = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: get
      uri: {url: "{{ base }}/get?x=1"}
      register: u_get
    - name: post json
      uri:
        url: "{{ base }}/post"
        method: POST
        body_format: json
        body: {name: "it's", n: 3}
        headers: {X-Token: 'a "quoted" value'}
        status_code: [200, 201]
        return_content: true
      register: u_post
    - name: put form
      uri: {url: "{{ base }}/form", method: PUT, body_format: form-urlencoded,
            body: {a: 1, b: [x, y]}}
      register: u_form
    - name: basic auth
      uri: {url: "{{ base }}/auth", url_username: alice, url_password: 's3cr"et',
            force_basic_auth: true}
      register: u_auth
    - name: auth on challenge
      uri: {url: "{{ base }}/auth", user: alice, password: 's3cr"et'}
      register: u_challenge
    - name: redirect
      uri: {url: "{{ base }}/redirect"}
      register: u_redirect
    - name: no redirect
      uri: {url: "{{ base }}/redirect", follow_redirects: none, status_code: 302}
      register: u_stay
    - name: missing
      uri: {url: "{{ base }}/missing", return_content: true}
      register: u_missing
      ignore_errors: true
    - name: refused
      uri: {url: "{{ refused }}", timeout: 5}
      register: u_refused
      ignore_errors: true
    - file: {path: /tmp/mr-netmods/uri, state: directory}
    - copy: {dest: /tmp/mr-netmods/uri/up.json, content: '{"up": 1}'}
    - name: upload
      uri: {url: "{{ base }}/up", method: PUT, src: /tmp/mr-netmods/uri/up.json, remote_src: true}
      register: u_up
    - name: download
      uri: {url: "{{ base }}/file.txt", dest: /tmp/mr-netmods/uri/dl.txt,
            status_code: [200, 304], mode: "0640"}
      register: u_dest
    - name: show
      debug:
        msg: "{{ {'get': u_get, 'post': u_post, 'form': u_form, 'auth': u_auth,
                  'challenge': u_challenge, 'redirect': u_redirect, 'stay': u_stay,
                  'missing': u_missing, 'refused': u_refused, 'dest': u_dest,
                  'up': u_up} | to_json }}"
"""


def test_uri_requests_from_the_host_with_ansibles_results(
    tmp_path: Path, lab: Lab, web: str
) -> None:
    setup(tmp_path, lab, URI)
    host = web.split("//")[1].split(":")[0]
    refused = f"http://{host}:{closed_port(host)}/none"
    out, report = apply(tmp_path, "-e", f"base={web}", "-e", f"refused={refused}")
    assert out.returncode == 0, out.stdout + out.stderr
    r = shown(report)
    get = r["get"]
    assert (get["status"], get["url"], get["redirected"], get["changed"]) == (
        200,
        f"{web}/get?x=1",
        False,
        False,
    )
    assert get["json"]["headers"]["user-agent"] == "ansible-httpget"
    assert get["content_type"] == "application/json" and get["msg"].startswith("OK (")
    assert get["cookies"] == {"session": "abc"} and get["cookies_string"] == "session=abc"
    assert "content" not in get
    post = r["post"]["json"]
    assert (post["method"], json.loads(post["body"])) == ("POST", {"name": "it's", "n": 3})
    assert post["headers"]["content-type"] == "application/json"
    assert post["headers"]["x-token"] == 'a "quoted" value'
    assert json.loads(r["post"]["content"])["path"] == "/post"
    form = r["form"]["json"]
    assert (form["method"], form["body"]) == ("PUT", "a=1&b=x&b=y")
    assert form["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert r["auth"]["json"] == {"user": "alice"} and r["challenge"]["status"] == 200
    assert r["redirect"]["redirected"] is True
    assert r["redirect"]["json"]["path"] == "/echo?from=redirect"
    assert (r["stay"]["status"], r["stay"]["location"]) == (302, f"{web}/echo?from=redirect")
    missing = r["missing"]
    assert (missing["status"], missing["content"]) == (404, "not here")
    assert missing["msg"] == "Status code was 404 and not [200]: HTTP Error 404: Not Found"
    assert r["refused"]["status"] == -1 and "Request failed" in r["refused"]["msg"]
    assert (r["up"]["json"]["method"], r["up"]["json"]["body"]) == ("PUT", '{"up": 1}')
    assert (r["dest"]["status"], r["dest"]["changed"]) == (200, True)
    assert r["dest"]["path"] == "/tmp/mr-netmods/uri/dl.txt"
    assert sh(lab, "stat -c %a /tmp/mr-netmods/uri/dl.txt; cat /tmp/mr-netmods/uri/dl.txt") == (
        "640\n" + FILE_BODY.decode()
    )
    # the file is there: If-Modified-Since, 304 accepted, nothing changed
    again, report = apply(tmp_path, "-e", f"base={web}", "-e", f"refused={refused}")
    assert again.returncode == 0, again.stdout + again.stderr
    assert changed_tasks(report) == []
    assert shown(report)["dest"]["status"] == 304


# --- git ---------------------------------------------------------------------------------

MAKE_REPO = """\
set -e
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t
rm -rf /tmp/mr-netmods/git && mkdir -p /tmp/mr-netmods/git && cd /tmp/mr-netmods/git
git init -q -b main work && cd work
git commit -q --allow-empty -m one && git tag -a v1 -m v1
echo a > a.txt && git add a.txt && git commit -q -m two
git branch dev HEAD~1
git clone -q --bare . /tmp/mr-netmods/git/repo.git
pr=$(git commit-tree -p HEAD~1 -m pull HEAD^{tree})
git push -q ../repo.git "$pr:refs/pull/7/head"
git rev-parse HEAD HEAD~1
echo "$pr"
"""

GIT_CLONES = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: make repo
      shell: "{{ make_repo }}"
      register: made
    - name: clone
      git: {repo: /tmp/mr-netmods/git/repo.git, dest: /tmp/mr-netmods/git/co}
      register: g_clone
    - name: clone again
      git: {repo: /tmp/mr-netmods/git/repo.git, dest: /tmp/mr-netmods/git/co}
      register: g_again
    - name: tag, shallow
      git: {repo: "file:///tmp/mr-netmods/git/repo.git", dest: /tmp/mr-netmods/git/tag,
            version: v1, depth: 1}
      register: g_tag
    - name: branch
      git: {name: /tmp/mr-netmods/git/repo.git, dest: /tmp/mr-netmods/git/dev, version: dev}
      register: g_dev
    - name: bare
      git: {repo: /tmp/mr-netmods/git/repo.git, dest: /tmp/mr-netmods/git/bare.git, bare: true}
      register: g_bare
    - name: a pull request's commit, by refspec, into a home folder
      git: {repo: /tmp/mr-netmods/git/repo.git, dest: ~/mr-netmods-pr,
            refspec: "+refs/pull/*:refs/remotes/origin/pull/*",
            version: "{{ made.stdout_lines[2] }}"}
      register: g_pr
    - name: show
      debug:
        msg: "{{ {'made': made.stdout_lines, 'clone': g_clone, 'again': g_again, 'tag': g_tag,
                  'dev': g_dev, 'bare': g_bare, 'pr': g_pr} | to_json }}"
"""

GIT_UPDATE = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: no force
      git: {repo: /tmp/mr-netmods/git/repo.git, dest: /tmp/mr-netmods/git/co}
      register: g_keep
      ignore_errors: true
    - name: force
      git: {repo: /tmp/mr-netmods/git/repo.git, dest: /tmp/mr-netmods/git/co, force: true}
      register: g_force
    - name: force again
      git: {repo: /tmp/mr-netmods/git/repo.git, dest: /tmp/mr-netmods/git/co, force: true}
      register: g_force_again
    - name: no update
      git: {repo: /tmp/mr-netmods/git/repo.git, dest: /tmp/mr-netmods/git/dev, update: false}
      register: g_still
    - name: show
      debug:
        msg: "{{ {'keep': g_keep, 'force': g_force, 'again': g_force_again,
                  'still': g_still} | to_json }}"
"""


def test_git_clones_and_updates_a_checkout_as_ansible(tmp_path: Path, lab: Lab) -> None:
    setup(tmp_path, lab, GIT_CLONES)
    write(tmp_path, "vars.yml", "make_repo: " + json.dumps(MAKE_REPO) + "\n")
    out, report = apply(tmp_path, "-e", "@vars.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    r = shown(report)
    two, one, pull = r["made"]
    assert (r["clone"]["before"], r["clone"]["after"], r["clone"]["changed"]) == (None, two, True)
    again = r["again"]
    assert (again["before"], again["after"], again["changed"]) == (two, two, False)
    assert again["remote_url_changed"] is False
    assert r["tag"]["after"] == one and r["dev"]["after"] == one and r["bare"]["after"] == two
    assert r["pr"]["after"] == pull
    assert sh(lab, "git -C /root/mr-netmods-pr rev-parse HEAD") == pull + "\n"
    checkouts = "cd /tmp/mr-netmods/git; cat co/a.txt; git -C dev rev-parse --abbrev-ref HEAD; "
    checkouts += "git -C tag rev-list --count HEAD; git -C bare.git rev-parse --is-bare-repository"
    assert sh(lab, checkouts) == "a\ndev\n1\ntrue\n"

    # a new commit upstream and a local modification in the checkout
    three = sh(
        lab,
        "set -e; export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t "
        "GIT_COMMITTER_EMAIL=t@t; cd /tmp/mr-netmods/git/work; echo b > b.txt; git add b.txt; "
        "git commit -q -m three; git push -q ../repo.git main; git rev-parse HEAD; "
        "echo changed > ../co/a.txt",
    ).strip()
    write(tmp_path, "site.yml", GIT_UPDATE)
    checked, report = apply(tmp_path, "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    r = shown(report)
    assert r["keep"]["failed"] is True
    assert r["keep"]["msg"] == (
        "Local modifications exist in the destination: /tmp/mr-netmods/git/co (force=no)."
    )
    assert (r["force"]["before"], r["force"]["after"], r["force"]["changed"]) == (two, three, True)
    assert sh(lab, "cd /tmp/mr-netmods/git/co; git rev-parse HEAD; cat a.txt") == (
        f"{two}\nchanged\n"
    )

    applied, report = apply(tmp_path)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    r = shown(report)
    assert (r["force"]["after"], r["force"]["changed"]) == (three, True)
    assert (r["again"]["before"], r["again"]["after"], r["again"]["changed"]) == (
        three,
        three,
        False,
    )
    assert (r["still"]["after"], r["still"]["changed"]) == (one, False)
    assert sh(lab, "cd /tmp/mr-netmods/git/co; git rev-parse HEAD; cat a.txt b.txt") == (
        f"{three}\na\nb\n"
    )


# --- check mode: getent, pause, ping run; raw, script, uri are skipped ---------------

CHECK_MODE = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: root
      getent: {database: passwd, key: root}
      register: ge_root
    - name: groups
      getent: {database: group}
    - name: absent key, tolerated
      getent: {database: passwd, key: nobody-here, fail_key: false}
      register: ge_none
    - name: absent key
      getent: {database: passwd, key: nobody-here}
      ignore_errors: true
      register: ge_fail
    - name: hosts, split on whitespace
      getent: {database: hosts, key: localhost}
    - name: wait
      pause: {seconds: 1}
      register: p_wait
    - name: prompt
      pause: {prompt: Continue?}
      register: p_prompt
    - name: ping
      ping:
      register: pi_pong
    - name: ping data
      ping: {data: hello}
      register: pi_data
    - name: ping crash
      ping: data=crash
      ignore_errors: true
      register: pi_crash
    - name: raw
      raw: mkdir /tmp/mr-netmods-check
    - name: script
      script: probe.sh /tmp/mr-netmods-check
    - name: uri
      uri: {url: "{{ base }}/get", dest: /tmp/mr-netmods-check}
    - name: script nowhere
      script: nowhere.sh --flag
      ignore_errors: true
    - name: both durations
      pause: {seconds: 1, minutes: 1}
      ignore_errors: true
    - name: a PPA
      apt_repository: {repo: "ppa:someone/thing"}
      ignore_errors: true
    - name: a bad key id
      apt_key: {id: not-hex, state: absent}
      ignore_errors: true
    - name: a relative chdir
      script: {cmd: probe.sh, chdir: tmp}
      ignore_errors: true
    - name: show
      debug:
        msg: "{{ {'root': ge_root.ansible_facts.getent_passwd.root, 'wheel': getent_group.root,
                  'none': ge_none.ansible_facts.getent_passwd, 'fail': ge_fail,
                  'hosts': getent_hosts, 'wait': p_wait, 'prompt': p_prompt, 'pong': pi_pong,
                  'data': pi_data, 'crash': pi_crash} | to_json }}"
"""


def test_check_mode_runs_getent_pause_ping_and_skips_raw_script_uri(
    tmp_path: Path, lab: Lab, web: str
) -> None:
    setup(tmp_path, lab, CHECK_MODE)
    write(tmp_path, "files/probe.sh", '#!/bin/sh\nmkdir "$1"\n')
    out, report = apply(tmp_path, "--check", "-e", f"base={web}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert changed_tasks(report) == []
    tasks = tasks_of(report)
    # as in Ansible: raw, script without creates/removes and uri do not run in check mode
    assert [tasks[name]["status"] for name in ("raw", "script", "uri")] == ["skipped"] * 3
    assert sh(lab, "ls -d /tmp/mr-netmods-check 2>&1").count("No such") == 1
    missing = tasks["script nowhere"]["msg"]  # a script that is nowhere: the folders searched
    assert "nowhere.sh' not found" in missing and str(tmp_path / "files/nowhere.sh") in missing
    r = shown(report)
    assert r["root"] == ["x", "0", "0", "root", "/root", "/bin/bash"]
    assert r["wheel"] == ["x", "0", ""]
    assert r["none"] == {"nobody-here": None}
    assert r["fail"]["msg"] == "One or more supplied key could not be found in the database."
    assert [fields[0] for fields in r["hosts"].values()] == ["localhost"]  # split on spaces
    assert r["wait"]["stdout"].startswith("Paused for 1.") and r["wait"]["delta"] >= 1
    assert r["prompt"]["user_input"] == "" and r["prompt"]["warnings"] == [
        "Not waiting for response to prompt as stdin is not interactive"
    ]
    assert (r["pong"]["ping"], r["data"]["ping"]) == ("pong", "hello")
    assert r["crash"]["failed"] is True
    # mistakes only known with the values: the task fails, saying what was expected
    assert tasks["both durations"]["msg"] == "parameters are mutually exclusive: minutes|seconds"
    assert "PPAs need Launchpad" in tasks["a PPA"]["msg"]
    assert "Invalid key_id 'not-hex'" in tasks["a bad key id"]["msg"]
    assert "chdir tmp must be an absolute path" in tasks["a relative chdir"]["msg"]


def test_wrong_arguments_are_load_errors_naming_file_and_line(tmp_path: Path, lab: Lab) -> None:
    setup(
        tmp_path,
        lab,
        """\
        - hosts: all
          gather_facts: false
          tasks:
            - name: bad format
              uri: {url: "http://x", body_format: xml}
            - name: no repo
              git: {dest: /tmp/x}
            - name: no database
              getent: {key: root}
            - name: typo
              apt_repository: {repo: "deb http://x y z", update_cach: false}
            - name: no key
              deb822_repository: {types: [rpm]}
        """,
    )
    out, _ = apply(tmp_path)
    assert out.returncode == 4, out.stdout + out.stderr
    for expected in (
        "site.yml:5:43: task \"bad format\": uri: body_format: 'xml' is not allowed",
        "site.yml:7:7: task \"no repo\": git: missing required argument 'repo'",
        "site.yml:9:7: task \"no database\": getent: missing required argument 'database'",
        "apt_repository: unknown argument 'update_cach' (did you mean 'update_cache'?)",
        "site.yml:13:7: task \"no key\": deb822_repository: missing required argument 'name'",
    ):
        assert expected in out.stderr, out.stderr


# --- apt_key, apt_repository, deb822_repository -----------------------------------------

APT = """\
- hosts: all
  gather_facts: false
  vars:
    chrome: "deb [arch=amd64] https://user:pw@dl.mr-netmods.example.com/linux/chrome/deb/
      stable main"
  tasks:
    - name: a key to add
      shell: |
        export GNUPGHOME=$(mktemp -d)
        gpg --batch --passphrase "" --quick-gen-key "Test <t@t>" ed25519 sign never 2>/dev/null
        gpg --armor --export t@t > /tmp/mr-netmods/key.asc
        rm -rf "$GNUPGHOME"
        printf '#deb   http://old.mr-netmods.example.com/debian  bookworm main # kept\\n\\n' \\
          > /etc/apt/sources.list.d/mr-netmods-old.list
      args: {creates: /tmp/mr-netmods/key.asc}
      when: st == "present"
    - name: fingerprint
      command: gpg --with-colons --show-keys /tmp/mr-netmods/key.asc
      register: shown_key
      changed_when: false
      check_mode: false
    - name: key
      apt_key: {file: /tmp/mr-netmods/key.asc, keyring: /tmp/mr-netmods/kr.gpg, state: "{{ st }}",
                id: "{{ shown_key.stdout | regex_search('fpr:+([0-9A-F]+)', '\\\\1') | first }}"}
      register: a_key
    - name: chrome
      apt_repository: {repo: "{{ chrome }}", update_cache: false, state: "{{ st }}"}
      register: a_chrome
    - name: enable old
      apt_repository: {repo: "deb http://old.mr-netmods.example.com/debian bookworm main",
                       update_cache: no, state: "{{ st }}"}
    - name: local
      apt_repository: {repo: "deb [trusted=yes] file:/srv/mr-netmods ./", update_cache: false,
                       filename: mr-netmods-local, mode: "0600", state: "{{ st }}"}
    - name: deb822
      deb822_repository:
        name: Mr_Netmods Docker
        uris: https://download.mr-netmods.example.com/linux/debian
        suites: bookworm
        components: [stable, extra]
        signed_by: "{{ base }}/key.asc"
        enabled: true
        state: "{{ st }}"
      register: a_deb822
    - name: show
      debug: {msg: "{{ {'key': a_key, 'chrome': a_chrome, 'deb822': a_deb822} | to_json }}"}
"""

DEB822 = """\
Components: stable extra
Enabled: yes
X-Repolib-Name: Mr_Netmods Docker
Signed-By: /etc/apt/keyrings/mr-netmods-docker.asc
Suites: bookworm
Types: deb
URIs: https://download.mr-netmods.example.com/linux/debian
"""

LISTS = (
    "cd /etc/apt/sources.list.d; for f in dl_mr_netmods_example_com_linux_chrome_deb.list "
    "mr-netmods-old.list mr-netmods-local.list mr-netmods-docker.sources "
    '/etc/apt/keyrings/mr-netmods-docker.asc; do echo "== $f $(stat -c %a $f)"; cat $f; done'
)


def test_apt_sources_and_keys_as_ansible_writes_them(tmp_path: Path, lab: Lab, web: str) -> None:
    setup(tmp_path, lab, APT)
    sh(lab, "mkdir -p /tmp/mr-netmods")
    out, report = apply(tmp_path, "-e", f"base={web}", "-e", "st=present")
    assert out.returncode == 0, out.stdout + out.stderr
    r = shown(report)
    fingerprint = r["key"]["fp"]
    assert len(fingerprint) == 40 and r["key"]["after"] == [fingerprint[-16:]]
    assert r["key"]["before"] == [] and r["key"]["changed"] is True
    assert r["chrome"]["sources_added"] == [
        "/etc/apt/sources.list.d/dl_mr_netmods_example_com_linux_chrome_deb.list"
    ]
    assert r["deb822"]["key_filename"] == "/etc/apt/keyrings/mr-netmods-docker.asc"
    assert r["deb822"]["repo"] == DEB822
    chrome = (
        "deb [arch=amd64] https://user:pw@dl.mr-netmods.example.com/linux/chrome/deb/ stable main"
    )
    assert sh(lab, LISTS) == (
        "== dl_mr_netmods_example_com_linux_chrome_deb.list 644\n"
        f"{chrome}\n"
        "== mr-netmods-old.list 644\n"
        "deb http://old.mr-netmods.example.com/debian bookworm main # kept\n\n"
        "== mr-netmods-local.list 600\n"
        "deb [trusted=yes] file:/srv/mr-netmods ./\n"
        "== mr-netmods-docker.sources 644\n"
        f"{DEB822}"
        "== /etc/apt/keyrings/mr-netmods-docker.asc 644\n"
        f"{ARMORED_KEY}"
    )
    # apt itself reads what was written without an error
    assert "E:" not in sh(lab, "apt-cache policy 2>&1")

    again, report = apply(tmp_path, "-e", f"base={web}", "-e", "st=present")
    assert again.returncode == 0, again.stdout + again.stderr
    assert changed_tasks(report) == []

    # absent in check mode: said, not done; then done
    checked, report = apply(tmp_path, "-e", f"base={web}", "-e", "st=absent", "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert changed_tasks(report) == ["key", "chrome", "enable old", "local", "deb822"]
    assert sh(lab, LISTS).count("== ") == 5
    removed, report = apply(tmp_path, "-e", f"base={web}", "-e", "st=absent")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert shown(report)["key"]["after"] == []
    assert shown(report)["chrome"]["sources_removed"] == [
        "/etc/apt/sources.list.d/dl_mr_netmods_example_com_linux_chrome_deb.list"
    ]
    assert sh(lab, "ls /etc/apt/sources.list.d /etc/apt/keyrings | grep -c mr.netmods") == "1\n"
    assert sh(lab, "cat /etc/apt/sources.list.d/mr-netmods-old.list") == "\n"
