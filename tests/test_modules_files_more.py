"""replace, find, slurp, fetch, get_url, unarchive, tempfile and copy's remote_src,
directory_mode and follow, end to end on lab host h20.

One playbook holds every module's tasks (in paths of their own under /srv/mr-files) and is
applied four times by real `machineroom apply` subprocesses: a first run that changes, a
second that changes nothing, a `--check` run after changes on the host, the server and in the
variables (it must report them and leave the host as it was), and a last run that brings them.
Each test reads what it needs from those runs; debug tasks carry the registered results into
the JSON report. Bad arguments get a run of their own.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from machineroom.lab import Lab
from tests.clirun import machineroom

HOST = "h20"
ROOT = "/srv/mr-files"

SITE = """\
- hosts: all
  vars: {port: 8080, colour: blue, via: "via link\\n"}
  tasks:
    # replace
    - name: start
      copy:
        dest: @/r/app.conf
        force: false
        content: |
          # app
          Port 22
          #ListenAddress 0.0.0.0
          [colours]
          name = red
          name = green
          [end]
          name = red
    - {name: link to the conf, file: {src: app.conf, dest: @/r/link.conf, state: link}}
    - name: port
      replace: {path: @/r/link.conf, regexp: '^Port \\d+$', replace: 'Port {{ port }}'}
      register: ported
    - name: groups
      replace:
        dest: @/r/app.conf
        regexp: '^#(?=ListenAddress)(\\w+) (?P<ip>.*)$'
        replace: '\\1 \\g<ip>'
        backup: true
      register: grouped
    - name: section
      replace:
        path: @/r/app.conf
        after: '\\[colours\\]'
        before: '\\[end\\]'
        regexp: '^name = \\w+$'
        replace: 'name = {{ colour }}'
        mode: '0640'
      register: section
    - name: nowhere
      replace: {path: @/r/app.conf, after: 'NOPE', regexp: x}
      register: nowhere
    - name: show replace
      debug:
        msg: "{{ [ported.msg, grouped.backup_file is defined, section.msg, nowhere.msg,
          nowhere.changed] | to_json }}"

    # find and slurp
    - {name: top, find: {paths: @/f, patterns: '*.conf'}, register: top}
    - name: deep
      find: {paths: '@/f', patterns: '*.conf', recurse: yes, hidden: yes}
      register: deep
    - name: depth
      find: {paths: '@/f', pattern: '*.conf', recurse: true, depth: 2, excludes: 'c*'}
      register: depth
    - name: regex
      find: {path: '@/f', use_regex: true, patterns: '^[ab]\\.'}
      register: rx
    - name: contains
      find: {paths: '@/f', recurse: true, contains: 'port=\\d+', get_checksum: true}
      register: grepped
    - name: dirs
      find: {paths: ['@/f', '@/none'], file_type: directory, recurse: true}
      register: dirs
    - {name: links, find: {paths: '@/f', file_type: link}, register: links}
    - name: old and small
      find: {paths: '@/f', recurse: true, age: 2d, size: -1k}
      register: old
    - {name: big, find: {paths: '@/f', recurse: true, size: 100k}, register: big}
    - {name: slurp, slurp: {src: '@/f/sub/big.txt'}, register: slurped}
    - name: show find
      debug:
        msg: |
          {{ {'top': top.files | map(attribute='path') | list,
              'examined': top.examined, 'matched': top.matched,
              'deep': deep.files | map(attribute='path') | list,
              'depth': depth.files | map(attribute='path') | list,
              'rx': rx.files | map(attribute='path') | list,
              'grepped': grepped.files | map(attribute='path') | list,
              'sum': grepped.files[0].checksum,
              'dirs': dirs.files | map(attribute='path') | list,
              'skipped': dirs.skipped_paths, 'msg': dirs.msg,
              'links': links.files | map(attribute='path') | list,
              'islnk': links.files[0].islnk, 'mode': top.files[0].mode,
              'owner': top.files[0].pw_name, 'isreg': top.files[0].isreg,
              'old': old.files | map(attribute='path') | list,
              'big': big.files | map(attribute='path') | list,
              'source': slurped.source, 'encoding': slurped.encoding,
              'slurped_sha1': slurped.content | b64decode | hash('sha1'),
             } | to_json }}

    # fetch
    - {name: tree, fetch: {src: '@/fe/a.txt', dest: fetched}, register: tree}
    - {name: flat, fetch: {src: '@/fe/big.bin', dest: flat/, flat: true}}
    - name: missing
      fetch: {src: '@/fe/none', dest: fetched, fail_on_missing: false}
      register: missing
    - {name: folder, fetch: {src: '@/fe', dest: fetched}, ignore_errors: true}
    - name: show fetch
      debug:
        msg: "{{ [tree.dest | default(''), tree.checksum | default(''),
          tree.remote_checksum | default(''), tree.md5sum | default(''), missing.msg] | to_json }}"

    # get_url
    - file: {path: @/g, state: directory}
    - name: plain
      get_url: {url: '{{ base }}/app.txt', dest: @/g/app.txt, mode: '0600'}
      register: plain
    - name: checksum
      get_url:
        url: '{{ base }}/app.txt'
        dest: @/g/sum.txt
        checksum: 'sha256:{{ sha }}'
        headers: {X-Token: secret}
      register: summed
    - name: into folder
      get_url: {url: '{{ base }}/app.txt', dest: @/g/}
    - name: sums file
      get_url:
        url: '{{ base }}/app.txt'
        dest: @/g/via-sums.txt
        checksum: 'sha256:{{ base }}/SHA256SUMS'
    - name: missing url
      get_url: {url: '{{ base }}/nope', dest: @/g/nope}
      register: nope
      ignore_errors: true
    - name: bad sum
      get_url:
        url: '{{ base }}/app.txt'
        dest: @/g/bad.txt
        checksum: 'sha1:{{ "0" * 40 }}'
      ignore_errors: true
    - name: show get_url
      debug:
        msg: "{{ [plain.status_code | default(None), plain.checksum_src, plain.dest, plain.url,
          plain.checksum_dest, nope.status_code, nope.msg] | to_json }}"

    # unarchive and tempfile
    - file: {path: '@/u/{{ item }}', state: directory}
      loop: [local, zip, remote]
    - name: local
      unarchive: {src: app.tgz, dest: @/u/local, list_files: true, exclude: [app/skip.txt]}
      register: local
    - name: url
      unarchive: {src: '{{ base }}/app.zip', dest: @/u/zip, mode: 'u=rwX,g=rX,o='}
    - name: remote
      unarchive:
        src: @/u/app.tar.xz
        dest: @/u/remote
        remote_src: true
        extra_opts: [--strip-components=1]
    - name: creates
      unarchive: {src: app.tgz, dest: @/u/local, creates: @/u/local/app}
    - name: temp folder
      tempfile: {state: directory, suffix: .work}
      register: tmp
    - name: show unarchive
      debug:
        msg: "{{ [local.handler, local.files | default([]), tmp.path | default('')] | to_json }}"

    # copy: remote_src, directory_mode, follow
    - name: remote file
      copy: {src: @/c/src.txt, dest: @/c/out/, remote_src: true, directory_mode: '0750'}
    - name: remote folder
      copy: {src: @/c/tree, dest: @/c/copied, remote_src: true}
    - name: through link
      copy: {content: '{{ via }}', dest: @/c/link.txt, follow: true}
""".replace("@", ROOT)

PREPARE = """\
rm -rf @ && mkdir -p @/r @/f/sub/deep @/fe @/u/t/app @/c/tree/sub
cd @/f && printf 'port=80\\n' > a.conf && echo b > b.txt && echo h > .hidden.conf
echo c > sub/c.conf && echo d > sub/deep/d.conf && ln -s a.conf link.conf && chmod 640 a.conf
touch -d '3 days ago' b.txt sub/c.conf && head -c 300000 /dev/urandom | base64 > sub/big.txt
printf 'one\\n' > @/fe/a.txt && head -c 500000 /dev/urandom > @/fe/big.bin
echo xz > @/u/t/app/x.txt && tar cJf @/u/app.tar.xz -C @/u/t app
printf 'remote\\n' > @/c/src.txt && echo t > @/c/tree/t.txt && echo s > @/c/tree/sub/s.txt
printf 'target\\n' > @/c/target.txt && ln -s target.txt @/c/link.txt
""".replace("@", ROOT)

# files the check run must leave as they were
WATCHED = "r/app.conf g/app.txt u/local/app/README c/target.txt"


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def setup(root: Path, lab: Lab, site: str) -> None:
    address = next(h.address for h in lab.hosts if h.name == HOST)
    write(
        root,
        "inventory.yml",
        f"all:\n  vars: {{ssh_key: {lab.key}}}\n"
        f"  hosts:\n    {HOST}: {{host: {address}, user: root}}\n",
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


def ssh(lab: Lab, command: str) -> str:
    """A command on the host through OpenSSH (faster than a `machineroom run` subprocess)."""
    out = subprocess.run(
        ["ssh", "-F", lab.ssh_config, HOST, command], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def tasks_of(report: Any) -> dict[str, Any]:
    return {t["task"]: t for t in report["hosts"][HOST]["tasks"]}


def changed_tasks(report: Any) -> list[str]:
    return [t["task"] for t in report["hosts"][HOST]["tasks"] if t["status"] == "changed"]


def shown(report: Any, name: str) -> Any:
    return json.loads(tasks_of(report)[f"show {name}"]["msg"])


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """An HTTP server on a loopback address of this lab's network (the hosts share the
    machine's loopback), serving a folder; yields (base URL, folder)."""
    folder = tmp_path_factory.mktemp("www")
    net = os.environ.get("LAB_NET", "127.0.1")
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer((f"{net}.200", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{net}.200:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Runs:
    """The four runs of SITE and what the tests compare them with."""

    project: Path
    base: str
    sha256: str
    first: Any
    second: Any
    check: Any
    last: Any
    after_first: str  # host state read after the first run
    watched_before_check: str
    watched_after_check: str
    after_last: str


@pytest.fixture(scope="module")
def runs(lab: Lab, web: tuple[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Runs:
    base, www = web
    project = tmp_path_factory.mktemp("files-more")
    body = b"version 1\n"
    (www / "app.txt").write_bytes(body)
    sha = hashlib.sha256(body).hexdigest()
    (www / "SHA256SUMS").write_text(f"{'0' * 64}  other.txt\n{sha} *app.txt\n")
    tree = project / "tree"
    write(tree, "app/bin/run.sh", "echo run\n")
    write(tree, "app/README", "read me\n")
    write(tree, "app/skip.txt", "not wanted\n")
    (project / "files").mkdir()
    subprocess.run(["tar", "czf", project / "files" / "app.tgz", "-C", tree, "app"], check=True)
    subprocess.run(["zip", "-qr", www / "app.zip", "app"], cwd=tree, check=True)
    setup(project, lab, SITE)
    ssh(lab, PREPARE)
    extra = ("-e", f"base={base}", "-e", f"sha={sha}")

    out, first = apply(project, "--diff", *extra)
    assert out.returncode == 0, out.stdout + out.stderr
    after_first = ssh(
        lab,
        f"cd {ROOT} && cat r/app.conf && readlink r/link.conf && stat -c %a r/app.conf"
        " && grep -c '#ListenAddress' r/app.conf.*~"
        " && cat g/app.txt g/sum.txt g/via-sums.txt && stat -c %a g/app.txt && ls g"
        " && cat u/local/app/bin/run.sh u/zip/app/README u/remote/x.txt && ls u/local/app"
        " && stat -c %a u/zip/app u/zip/app/README"
        " && cat c/out/src.txt c/copied/tree/sub/s.txt c/target.txt && stat -c %a c/out"
        " && readlink c/link.txt && sha1sum < f/sub/big.txt",
    )
    out, second = apply(project, *extra)
    assert out.returncode == 0, out.stdout + out.stderr

    # changes on the host, on the web server and in the variables
    ssh(lab, f"printf 'two\\n' > {ROOT}/fe/a.txt && echo edited > {ROOT}/u/local/app/README")
    (www / "app.txt").write_bytes(b"version 2\n")
    os.utime(www / "app.txt", (time.time() + 60, time.time() + 60))
    watched = f"cd {ROOT} && md5sum {WATCHED}"
    before = ssh(lab, watched)
    more = ("-e", "port=9090", "-e", "colour=pink", "-e", "via=other")
    out, check = apply(project, "--check", *extra, *more)
    assert out.returncode == 0, out.stdout + out.stderr
    after = ssh(lab, watched)
    out, last = apply(project, *extra)
    assert out.returncode == 0, out.stdout + out.stderr
    after_last = ssh(lab, f"cat {ROOT}/u/local/app/README {ROOT}/g/app.txt")
    return Runs(
        project, base, sha, first, second, check, last, after_first, before, after, after_last
    )


def test_a_second_run_changes_nothing_and_check_mode_reports_without_changing(runs: Runs) -> None:
    assert changed_tasks(runs.second) == ["temp folder"]  # a new one each run, as Ansible
    changed = set(changed_tasks(runs.check))
    assert {"port", "section", "plain", "local", "through link"} <= changed
    assert runs.watched_after_check == runs.watched_before_check
    checked = tasks_of(runs.check)
    assert checked["tree"]["status"] == "skipped"  # fetch: no check mode, as Ansible
    assert checked["temp folder"]["status"] == "skipped"


def test_replace_python_regexes_sections_backup_and_links(runs: Runs) -> None:
    assert runs.after_first.startswith(
        "# app\nPort 8080\nListenAddress 0.0.0.0\n[colours]\n"
        "name = blue\nname = blue\n[end]\nname = red\n"
        "app.conf\n640\n1\n"  # the link still links; mode; the backup holds the old line
    )
    assert shown(runs.first, "replace") == [
        "1 replacements made",
        True,
        "2 replacements made and ownership, perms or SE linux context changed",
        "Pattern for before/after params did not match the given file: NOPE(?P<subsection>.*)",
        False,
    ]
    assert "+Port 8080" in tasks_of(runs.first)["port"]["diff"]


def test_find_filters_as_ansible_and_slurp_reads_a_big_file(runs: Runs) -> None:
    f = f"{ROOT}/f"
    found = shown(runs.first, "find")
    assert found["top"] == [f"{f}/a.conf"]
    assert (found["examined"], found["matched"]) == (5, 1)
    assert sorted(found["deep"]) == [
        f"{f}/.hidden.conf",
        f"{f}/a.conf",
        f"{f}/sub/c.conf",
        f"{f}/sub/deep/d.conf",
    ]
    assert found["depth"] == [f"{f}/a.conf"]
    assert sorted(found["rx"]) == [f"{f}/a.conf", f"{f}/b.txt"]
    assert found["grepped"] == [f"{f}/a.conf"]
    assert found["sum"] == hashlib.sha1(b"port=80\n").hexdigest()
    assert found["dirs"] == [f"{f}/sub", f"{f}/sub/deep"]
    assert found["skipped"] == {f"{ROOT}/none": f"'{ROOT}/none' is not a directory"}
    assert found["msg"] == "Not all paths examined, check warnings for details"
    assert (found["links"], found["islnk"]) == ([f"{f}/link.conf"], True)
    assert (found["mode"], found["owner"], found["isreg"]) == ("0640", "root", True)
    assert sorted(found["old"]) == [f"{f}/b.txt", f"{f}/sub/c.conf"]
    assert found["big"] == [f"{f}/sub/big.txt"]
    assert (found["source"], found["encoding"]) == (f"{f}/sub/big.txt", "base64")
    assert found["slurped_sha1"] == runs.after_first.split()[-2]  # 400 KB, several pieces


def test_fetch_brings_files_per_host_or_flat_only_when_they_differ(runs: Runs) -> None:
    local = runs.project / "fetched" / HOST / ROOT.lstrip("/") / "fe" / "a.txt"
    digest = hashlib.sha1(b"one\n").hexdigest()
    assert shown(runs.first, "fetch") == [
        str(local),
        digest,
        digest,
        hashlib.md5(b"one\n").hexdigest(),
        "the remote file does not exist, not transferring, ignored",
    ]
    assert (runs.project / "flat" / "big.bin").stat().st_size == 500000
    first = tasks_of(runs.first)
    assert (first["tree"]["status"], first["flat"]["status"]) == ("changed", "changed")
    assert first["folder"]["status"] == "failed"
    assert "fetch cannot work on directories" in first["folder"]["msg"]
    # changed on the host after the check run: the last run brings it
    assert tasks_of(runs.last)["tree"]["status"] == "changed"
    assert local.read_text() == "two\n"


def test_get_url_downloads_once_checks_sums_and_fails_clearly(runs: Runs) -> None:
    g = f"{ROOT}/g"
    assert "version 1\nversion 1\nversion 1\n600\napp.txt\nsum.txt\nvia-sums.txt\n" in (
        runs.after_first
    )
    first = tasks_of(runs.first)
    assert first["bad sum"]["status"] == "failed"
    assert f"did not match {'0' * 40}" in first["bad sum"]["msg"]
    assert shown(runs.first, "get_url") == [
        200,
        hashlib.sha1(b"version 1\n").hexdigest(),
        f"{g}/app.txt",
        f"{runs.base}/app.txt",
        None,  # as Ansible: the digest of dest before the download (there was none)
        404,
        "Request failed",
    ]
    # the new version on the server: the last run downloads it (the checksummed copy stays)
    assert runs.after_last.endswith("version 2\n")
    assert "checksum" not in changed_tasks(runs.last)


def test_unarchive_unpacks_once_from_here_a_url_or_the_host_and_tempfile(runs: Runs) -> None:
    assert "echo run\nread me\nxz\nREADME\nbin\n750\n640\n" in runs.after_first
    assert tasks_of(runs.first)["creates"]["status"] == "skipped"
    handler, files, temp = shown(runs.first, "unarchive")
    assert handler == "TgzArchive"
    assert sorted(files) == ["app/", "app/README", "app/bin/", "app/bin/run.sh"]
    assert temp.startswith("/tmp/ansible.") and temp.endswith(".work")
    # a file edited under dest: the check run said it would unpack, the last run did
    assert runs.after_last.startswith("read me\n")


def test_copy_remote_src_directory_mode_and_follow(runs: Runs) -> None:
    assert "remote\ns\nvia link\n750\ntarget.txt\n" in runs.after_first


def test_bad_arguments_are_named(tmp_path: Path, lab: Lab) -> None:
    site = """\
    - hosts: all
      tasks:
        - name: bad regexp
          replace: {path: /etc/hostname, regexp: 'a(b'}
          ignore_errors: true
        - name: missing file
          replace: {path: /srv/mr-files/nothing-here, regexp: a}
          ignore_errors: true
        - name: not a folder
          unarchive: {src: /etc/hostname, dest: /etc/hostname, remote_src: true}
          ignore_errors: true
        - name: not an archive
          unarchive: {src: /etc/hostname, dest: /tmp, remote_src: true}
          ignore_errors: true
        - name: bad checksum
          get_url: {url: 'http://127.0.0.1:1/x', dest: /tmp/x, checksum: 'abc'}
          ignore_errors: true
        - name: bad prefix
          tempfile: {prefix: 'a/b'}
          ignore_errors: true
        - name: bad age
          find: {paths: /tmp, age: 3 days}
          ignore_errors: true
        - name: no source
          slurp: {src: /srv/mr-files/nothing-here}
          ignore_errors: true
    """
    setup(tmp_path, lab, site + "    - replace: {path: /etc/hostname, regexp: a, replce: b}\n")
    out, _ = apply(tmp_path)
    assert out.returncode == 4, out.stdout + out.stderr
    assert "'replce'" in out.stderr and "replace" in out.stderr
    write(tmp_path, "site.yml", site)
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    msgs = {name: task["msg"] for name, task in tasks_of(report).items()}
    assert "'a(b' is not a valid regular expression" in msgs["bad regexp"]
    assert msgs["missing file"] == "Path /srv/mr-files/nothing-here does not exist !"
    assert msgs["not a folder"] == "Destination '/etc/hostname' is not a directory"
    assert 'Failed to find handler for "/etc/hostname"' in msgs["not an archive"]
    assert "<algorithm>:<checksum>" in msgs["bad checksum"]
    assert "prefix must be a valid file name component" in msgs["bad prefix"]
    assert "failed to process age '3 days'" in msgs["bad age"]
    assert msgs["no source"] == "File not found: /srv/mr-files/nothing-here"


# Pure logic, no host: the scripts parse (`sh -n`), Ansible's algorithms on canned input.


def test_every_script_is_valid_sh() -> None:
    from machineroom.modules.base import ModuleContext
    from machineroom.modules.get_url import GetUrlModule
    from machineroom.modules.tempfile import TempfileModule
    from machineroom.modules.unarchive import UnarchiveModule

    ctx = ModuleContext("h1", read_file=lambda src: b"archive")
    steps = [
        GetUrlModule().build(
            {"url": "https://x/a b", "dest": "/o p", "headers": {"A": "b'c"}, "mode": "u+x"}, ctx
        ),
        UnarchiveModule().build(
            {"src": "a.tgz", "dest": "/d", "exclude": ["x"], "extra_opts": ["--no-same-owner"]},
            ctx,
        ),
        TempfileModule().build({"state": "directory", "suffix": "$(id)"}, ctx),
    ]
    for step in steps:
        assert step is not None
        checked = subprocess.run(["sh", "-n"], input=step.script, text=True, capture_output=True)
        assert checked.returncode == 0, checked.stderr


def test_replace_follows_ansibles_algorithm() -> None:
    from machineroom.modules.replace import replaced

    text = "a=1\n[s]\na=2\na=3\n[e]\na=4\n"
    assert replaced({"regexp": r"^a=(\d)$", "replace": r"b=\1"}, text) == (
        "b=1\n[s]\nb=2\nb=3\n[e]\nb=4\n",
        4,
        "",
    )
    section = {"regexp": "^a=", "replace": "c=", "after": r"\[s\]", "before": r"\[e\]"}
    assert replaced(section, text)[:2] == ("a=1\n[s]\nc=2\nc=3\n[e]\na=4\n", 2)
    assert replaced({"regexp": "a=1", "replace": "a=1"}, text) == (text, 0, "")
    assert "did not match" in replaced({"regexp": "x", "before": "nope"}, text)[2]


def test_find_orders_entries_as_os_walk() -> None:
    from machineroom.modules.find import Entry, walk_order

    def entry(path: str, kind: int) -> Entry:
        return Entry(path, kind, ["0"] * 11)

    d, f = 0o040755, 0o100644
    listed = [entry("/t/sub", d), entry("/t/sub/x", f), entry("/t/a", f), entry("/t/b", d)]
    order = [(e.path, depth) for e, depth in walk_order("/t/", listed, follow=False)]
    assert order == [("/t/a", 1), ("/t/sub", 1), ("/t/b", 1), ("/t/sub/x", 2)]


def test_get_url_reads_checksums_as_ansible() -> None:
    from machineroom.errors import InputError
    from machineroom.modules.get_url import mask_url, parse_checksum, url_filename

    assert parse_checksum("sha256:AB-CD") == ("sha256", "abcd", "")
    assert parse_checksum("sha1:https://x/SUMS") == ("sha1", "", "https://x/SUMS")
    for bad in ("abc", "crc32:00", "md5:xyz"):
        with pytest.raises(InputError):
            parse_checksum(bad)
    assert url_filename("https://x/dl/") == "index.html"
    assert url_filename("https://x/a/tool.tgz?v=1") == "tool.tgz"
    assert mask_url("https://u:secret@x/a") == "https://u:********@x/a"
