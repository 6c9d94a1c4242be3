"""replace, find, slurp, fetch, get_url, unarchive and tempfile, end to end on lab host h20.

Real `machineroom apply` subprocesses, in paths of their own (/srv/mr-files): a first run
changes, a second changes nothing, `--check` with other values reports changes and leaves the
host as it was, a bad argument is refused with a message naming it.
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
from pathlib import Path
from typing import Any

import pytest

from machineroom.lab import Lab
from tests.clirun import machineroom

HOST = "h20"
ROOT = "/srv/mr-files"


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


def sh(root: Path, command: str) -> str:
    out = machineroom("run", "-i", "inventory.yml", HOST, "--json", "--", command, cwd=root)
    return str(json.loads(out.stdout)["hosts"][HOST]["stdout"])


def tasks_of(report: Any) -> dict[str, Any]:
    return {t["task"]: t for t in report["hosts"][HOST]["tasks"]}


def changed_tasks(report: Any) -> list[str]:
    return [t["task"] for t in report["hosts"][HOST]["tasks"] if t["status"] == "changed"]


REPLACE_SITE = f"""\
- hosts: all
  vars: {{port: 8080, colour: blue}}
  tasks:
    - name: start
      copy:
        dest: {ROOT}/r/app.conf
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
    - name: link to the conf
      file: {{src: app.conf, dest: {ROOT}/r/link.conf, state: link}}
    - name: port
      replace: {{path: {ROOT}/r/link.conf, regexp: '^Port \\d+$', replace: 'Port {{{{ port }}}}'}}
      register: ported
    - name: groups
      replace:
        dest: {ROOT}/r/app.conf
        regexp: '^#(?=ListenAddress)(\\w+) (?P<ip>.*)$'
        replace: '\\1 \\g<ip>'
        backup: true
      register: grouped
    - name: section
      replace:
        path: {ROOT}/r/app.conf
        after: '\\[colours\\]'
        before: '\\[end\\]'
        regexp: '^name = \\w+$'
        replace: 'name = {{{{ colour }}}}'
        mode: '0640'
      register: section
    - name: nowhere
      replace: {{path: {ROOT}/r/app.conf, after: 'NOPE', regexp: x}}
      register: nowhere
    - name: results
      copy:
        dest: {ROOT}/r/results.json
        content: "{{{{ [ported.msg, ported.changed, grouped.backup_file is defined,
          section.msg, nowhere.msg, nowhere.changed] | to_json }}}}"
"""


def test_replace_python_regexes_sections_and_links(tmp_path: Path, lab: Lab) -> None:
    setup(tmp_path, lab, REPLACE_SITE)
    sh(tmp_path, f"rm -rf {ROOT}/r; mkdir -p {ROOT}/r")
    out, report = apply(tmp_path, "--diff")
    assert out.returncode == 0, out.stdout + out.stderr
    assert sh(tmp_path, f"cat {ROOT}/r/app.conf") == (
        "# app\nPort 8080\nListenAddress 0.0.0.0\n[colours]\n"
        "name = blue\nname = blue\n[end]\nname = red\n"
    )
    # the link still links: the real file was written
    assert sh(tmp_path, f"readlink {ROOT}/r/link.conf; stat -c %a {ROOT}/r/app.conf") == (
        "app.conf\n640\n"
    )
    results = json.loads(sh(tmp_path, f"cat {ROOT}/r/results.json"))
    assert results == [
        "1 replacements made",
        True,
        True,
        "2 replacements made and ownership, perms or SE linux context changed",
        "Pattern for before/after params did not match the given file: NOPE(?P<subsection>.*)",
        False,
    ]
    assert "+Port 8080" in tasks_of(report)["port"]["diff"]
    # the backup holds the content before that task
    assert "#ListenAddress" in sh(tmp_path, f"cat {ROOT}/r/app.conf.*~")

    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert changed_tasks(report) == ["results"]  # its content: the messages of a no-op run

    before = sh(tmp_path, f"md5sum {ROOT}/r/app.conf")
    out, report = apply(tmp_path, "--check", "-e", "port=9090", "-e", "colour=pink")
    assert out.returncode == 0, out.stdout + out.stderr
    assert {"port", "section"} <= set(changed_tasks(report))
    assert sh(tmp_path, f"md5sum {ROOT}/r/app.conf") == before


def test_replace_refuses_a_bad_regexp_a_missing_file_and_a_typo(tmp_path: Path, lab: Lab) -> None:
    site = f"""\
    - hosts: all
      tasks:
        - name: bad
          replace: {{path: /etc/hostname, regexp: 'a(b'}}
          ignore_errors: true
        - name: missing
          replace: {{path: {ROOT}/nothing-here, regexp: a}}
          ignore_errors: true
    """
    setup(tmp_path, lab, site + "    - replace: {path: /etc/hostname, regexp: a, replce: b}\n")
    out, _ = apply(tmp_path)
    assert out.returncode == 4, out.stdout + out.stderr
    assert "'replce'" in out.stderr and "replace" in out.stderr
    write(tmp_path, "site.yml", site)
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    tasks = tasks_of(report)
    assert "'a(b' is not a valid regular expression" in tasks["bad"]["msg"]
    assert tasks["missing"]["msg"] == f"Path {ROOT}/nothing-here does not exist !"


FIND_SITE = f"""\
- hosts: all
  tasks:
    - {{name: top, find: {{paths: {ROOT}/f, patterns: '*.conf'}}, register: top}}
    - name: deep
      find: {{paths: '{ROOT}/f', patterns: '*.conf', recurse: yes, hidden: yes}}
      register: deep
    - name: depth
      find: {{paths: '{ROOT}/f', pattern: '*.conf', recurse: true, depth: 2, excludes: 'c*'}}
      register: depth
    - name: regex
      find: {{path: '{ROOT}/f', use_regex: true, patterns: '^[ab]\\.'}}
      register: rx
    - name: contains
      find: {{paths: '{ROOT}/f', recurse: true, contains: 'port=\\d+', get_checksum: true}}
      register: grepped
    - name: dirs
      find: {{paths: ['{ROOT}/f', '{ROOT}/none'], file_type: directory, recurse: true}}
      register: dirs
    - {{name: links, find: {{paths: '{ROOT}/f', file_type: link}}, register: links}}
    - name: old and big
      find: {{paths: '{ROOT}/f', recurse: true, age: 2d, size: -1k}}
      register: old
    - {{name: big, find: {{paths: '{ROOT}/f', recurse: true, size: 100k}}, register: big}}
    - {{name: slurp, slurp: {{src: '{ROOT}/f/sub/big.txt'}}, register: slurped}}
    - name: write results
      copy:
        dest: {ROOT}/find.json
        content: |
          {{{{ {{'top': top.files | map(attribute='path') | list,
                'examined': top.examined, 'matched': top.matched,
                'deep': deep.files | map(attribute='path') | sort,
                'depth': depth.files | map(attribute='path') | sort,
                'rx': rx.files | map(attribute='path') | sort,
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
               }} | to_json }}}}
    - name: slurped back
      copy: {{dest: '{ROOT}/slurped.txt', content: "{{{{ slurped.content | b64decode }}}}"}}
"""


def test_find_filters_as_ansible_and_slurp_reads_a_big_file(tmp_path: Path, lab: Lab) -> None:
    setup(tmp_path, lab, FIND_SITE)
    f = f"{ROOT}/f"
    sh(
        tmp_path,
        f"rm -rf {f} {ROOT}/find.json {ROOT}/slurped.txt; mkdir -p {f}/sub/deep && cd {f}"
        " && printf 'port=80\\n' > a.conf && echo b > b.txt && echo h > .hidden.conf"
        " && echo c > sub/c.conf && echo d > sub/deep/d.conf && ln -s a.conf link.conf"
        " && chmod 640 a.conf && touch -d '3 days ago' b.txt sub/c.conf"
        " && head -c 300000 /dev/urandom | base64 > sub/big.txt",
    )
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    found = json.loads(sh(tmp_path, f"cat {ROOT}/find.json"))
    assert found["top"] == [f"{f}/a.conf"]
    assert (found["examined"], found["matched"]) == (5, 1)
    assert found["deep"] == [
        f"{f}/.hidden.conf",
        f"{f}/a.conf",
        f"{f}/sub/c.conf",
        f"{f}/sub/deep/d.conf",
    ]
    assert found["depth"] == [f"{f}/a.conf"]
    assert found["rx"] == [f"{f}/a.conf", f"{f}/b.txt"]
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
    assert sh(tmp_path, f"cmp {f}/sub/big.txt {ROOT}/slurped.txt && echo same") == "same\n"
    # nothing to change: find and slurp never report a change, in check mode neither
    out, report = apply(tmp_path, "--check")
    assert out.returncode == 0, out.stdout + out.stderr
    assert changed_tasks(report) == []


FETCH_SITE = f"""\
- hosts: all
  tasks:
    - {{name: tree, fetch: {{src: '{ROOT}/fe/a.txt', dest: fetched}}, register: tree}}
    - {{name: flat, fetch: {{src: '{ROOT}/fe/big.bin', dest: flat/, flat: true}}}}
    - name: missing
      fetch: {{src: '{ROOT}/fe/none', dest: fetched, fail_on_missing: false}}
      register: missing
    - {{name: folder, fetch: {{src: '{ROOT}/fe', dest: fetched}}, ignore_errors: true}}
    - name: note
      when: tree is changed
      copy:
        dest: {ROOT}/fetch.json
        content: "{{{{ [tree.dest, tree.checksum, tree.remote_checksum, tree.md5sum,
          missing.msg] | to_json }}}}"
"""


def test_fetch_brings_files_per_host_or_flat_once(tmp_path: Path, lab: Lab) -> None:
    setup(tmp_path, lab, FETCH_SITE)
    sh(
        tmp_path,
        f"rm -rf {ROOT}/fe && mkdir -p {ROOT}/fe && printf 'one\\n' > {ROOT}/fe/a.txt"
        f" && head -c 500000 /dev/urandom > {ROOT}/fe/big.bin",
    )
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    local = tmp_path / "fetched" / HOST / ROOT.lstrip("/") / "fe" / "a.txt"
    assert local.read_text() == "one\n"
    remote_big = sh(tmp_path, f"sha1sum < {ROOT}/fe/big.bin").split()[0]
    assert hashlib.sha1((tmp_path / "flat" / "big.bin").read_bytes()).hexdigest() == remote_big
    tasks = tasks_of(report)
    assert (tasks["tree"]["status"], tasks["flat"]["status"]) == ("changed", "changed")
    assert tasks["folder"]["status"] == "failed"
    assert "fetch cannot work on directories" in tasks["folder"]["msg"]
    digest = hashlib.sha1(b"one\n").hexdigest()
    assert json.loads(sh(tmp_path, f"cat {ROOT}/fetch.json")) == [
        str(local),
        digest,
        digest,
        hashlib.md5(b"one\n").hexdigest(),
        "the remote file does not exist, not transferring, ignored",
    ]
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert changed_tasks(report) == []
    # changed on the host: check mode skips fetch (as Ansible), the local copy stays
    sh(tmp_path, f"printf 'two\\n' > {ROOT}/fe/a.txt")
    out, report = apply(tmp_path, "--check")
    assert tasks_of(report)["tree"]["status"] == "skipped"
    assert local.read_text() == "one\n"
    out, report = apply(tmp_path)
    assert local.read_text() == "two\n"
    assert changed_tasks(report) == ["tree", "note"]


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on a loopback address of this lab's network (the hosts share the
    machine's loopback), serving a folder; yields (base URL, folder)."""
    folder = tmp_path / "www"
    folder.mkdir()
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


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


GET_URL_SITE = f"""\
- hosts: all
  tasks:
    - file: {{path: {ROOT}/g, state: directory}}
    - name: plain
      get_url: {{url: '{{{{ base }}}}/app.txt', dest: {ROOT}/g/app.txt, mode: '0600'}}
      register: plain
    - name: checksum
      get_url:
        url: '{{{{ base }}}}/app.txt'
        dest: {ROOT}/g/sum.txt
        checksum: 'sha256:{{{{ sha }}}}'
        headers: {{X-Token: secret}}
      register: summed
    - name: into folder
      get_url: {{url: '{{{{ base }}}}/app.txt', dest: {ROOT}/g/}}
    - name: sums file
      get_url:
        url: '{{{{ base }}}}/app.txt'
        dest: {ROOT}/g/via-sums.txt
        checksum: 'sha256:{{{{ base }}}}/SHA256SUMS'
    - name: missing
      get_url: {{url: '{{{{ base }}}}/nope', dest: {ROOT}/g/nope}}
      register: missing
      ignore_errors: true
    - name: bad sum
      get_url:
        url: '{{{{ base }}}}/app.txt'
        dest: {ROOT}/g/bad.txt
        checksum: 'sha1:{{{{ "0" * 40 }}}}'
      ignore_errors: true
    - name: note
      when: plain is changed
      copy:
        dest: {ROOT}/g/result.json
        content: "{{{{ [plain.status_code, plain.checksum_src, plain.dest, plain.url,
          summed.checksum_dest, missing.status_code, missing.msg] | to_json }}}}"
"""


def test_get_url_downloads_once_checks_sums_and_fails_clearly(
    tmp_path: Path, lab: Lab, web: tuple[str, Path]
) -> None:
    base, www = web
    body = b"version 1\n"
    (www / "app.txt").write_bytes(body)
    sha = hashlib.sha256(body).hexdigest()
    (www / "SHA256SUMS").write_text(f"{'0' * 64}  other.txt\n{sha} *app.txt\n")
    setup(tmp_path, lab, GET_URL_SITE)
    sh(tmp_path, f"rm -rf {ROOT}/g")
    extra = ("-e", f"base={base}", "-e", f"sha={sha}")
    out, report = apply(tmp_path, *extra)
    assert out.returncode == 0, out.stdout + out.stderr
    g = f"{ROOT}/g"
    assert sh(
        tmp_path, f"cat {g}/app.txt {g}/sum.txt {g}/via-sums.txt; stat -c %a {g}/app.txt"
    ) == ("version 1\nversion 1\nversion 1\n600\n")
    assert sh(tmp_path, f"ls {g}") == "app.txt\nresult.json\nsum.txt\nvia-sums.txt\n"
    tasks = tasks_of(report)
    assert tasks["bad sum"]["status"] == "failed"
    assert f"did not match {'0' * 40}" in tasks["bad sum"]["msg"]
    sha1 = hashlib.sha1(body).hexdigest()
    assert json.loads(sh(tmp_path, f"cat {g}/result.json")) == [
        200,
        sha1,
        f"{g}/app.txt",
        f"{base}/app.txt",
        None,  # as Ansible: the digest of dest before the download (there was none)
        404,
        "Request failed",
    ]
    # again: nothing downloaded twice (If-Modified-Since, or the checksum without a request)
    out, report = apply(tmp_path, *extra)
    assert out.returncode == 0, out.stdout + out.stderr
    assert changed_tasks(report) == []
    # a new version on the server: check mode says so and leaves the file
    (www / "app.txt").write_bytes(b"version 2\n")
    os.utime(www / "app.txt", (time.time() + 60, time.time() + 60))
    out, report = apply(tmp_path, "--check", *extra)
    assert "plain" in changed_tasks(report)
    assert sh(tmp_path, f"cat {g}/app.txt") == "version 1\n"


UNARCHIVE_SITE = f"""\
- hosts: all
  tasks:
    - file: {{path: '{ROOT}/u/{{{{ item }}}}', state: directory}}
      loop: [local, zip, remote]
    - name: local
      unarchive: {{src: app.tgz, dest: {ROOT}/u/local, list_files: true, exclude: [app/skip.txt]}}
      register: local
    - name: url
      unarchive: {{src: '{{{{ base }}}}/app.zip', dest: {ROOT}/u/zip, mode: 'u=rwX,g=rX,o='}}
    - name: remote
      unarchive:
        src: {ROOT}/u/app.tar.xz
        dest: {ROOT}/u/remote
        remote_src: true
        extra_opts: [--strip-components=1]
    - name: creates
      unarchive: {{src: app.tgz, dest: {ROOT}/u/local, creates: {ROOT}/u/local/app}}
    - name: temp folder
      tempfile: {{state: directory, suffix: .work}}
      register: tmp
    - name: note
      when: local is changed
      copy:
        dest: {ROOT}/u/result.json
        content: "{{{{ [local.handler, local.files | sort, tmp.path] | to_json }}}}"
"""


def test_unarchive_unpacks_once_from_here_a_url_or_the_host_and_tempfile(
    tmp_path: Path, lab: Lab, web: tuple[str, Path]
) -> None:
    base, www = web
    tree = tmp_path / "tree"
    write(tree, "app/bin/run.sh", "echo run\n")
    write(tree, "app/README", "read me\n")
    write(tree, "app/skip.txt", "not wanted\n")
    (tmp_path / "files").mkdir()
    subprocess.run(["tar", "czf", tmp_path / "files" / "app.tgz", "-C", tree, "app"], check=True)
    subprocess.run(["zip", "-qr", www / "app.zip", "app"], cwd=tree, check=True)
    setup(tmp_path, lab, UNARCHIVE_SITE)
    u = f"{ROOT}/u"
    sh(
        tmp_path,
        f"rm -rf {u} && mkdir -p {u}/t/app && echo xz > {u}/t/app/x.txt"
        f" && tar cJf {u}/app.tar.xz -C {u}/t app",
    )
    extra = ("-e", f"base={base}")
    out, report = apply(tmp_path, *extra)
    assert out.returncode == 0, out.stdout + out.stderr
    assert sh(tmp_path, f"cd {u} && cat local/app/bin/run.sh zip/app/README remote/x.txt") == (
        "echo run\nread me\nxz\n"
    )
    assert sh(tmp_path, f"ls {u}/local/app; stat -c %a {u}/zip/app {u}/zip/app/README") == (
        "README\nbin\n750\n640\n"
    )
    tasks = tasks_of(report)
    assert tasks["creates"]["status"] == "skipped"
    handler, files, temp = json.loads(sh(tmp_path, f"cat {u}/result.json"))
    assert handler == "TgzArchive"
    assert sorted(files) == ["app/", "app/README", "app/bin/", "app/bin/run.sh"]
    assert temp.startswith("/tmp/ansible.") and temp.endswith(".work")
    assert sh(tmp_path, f"stat -c %a {temp}") == "700\n"
    # again: nothing to unpack (tempfile always makes a new one, as in Ansible)
    out, report = apply(tmp_path, *extra)
    assert out.returncode == 0, out.stdout + out.stderr
    assert changed_tasks(report) == ["temp folder"]
    # a file changed under dest: check mode says it would unpack, and does not
    sh(tmp_path, f"echo edited > {u}/local/app/README")
    out, report = apply(tmp_path, "--check", *extra)
    assert changed_tasks(report) == ["local"]
    assert tasks_of(report)["temp folder"]["status"] == "skipped"
    assert sh(tmp_path, f"cat {u}/local/app/README") == "edited\n"
    out, report = apply(tmp_path, *extra)
    assert sh(tmp_path, f"cat {u}/local/app/README") == "read me\n"


def test_unarchive_and_get_url_name_what_is_wrong(tmp_path: Path, lab: Lab) -> None:
    setup(
        tmp_path,
        lab,
        """\
        - hosts: all
          tasks:
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
        """,
    )
    out, report = apply(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    tasks = tasks_of(report)
    assert tasks["not a folder"]["msg"] == "Destination '/etc/hostname' is not a directory"
    assert 'Failed to find handler for "/etc/hostname"' in tasks["not an archive"]["msg"]
    assert "<algorithm>:<checksum>" in tasks["bad checksum"]["msg"]
    assert "prefix must be a valid file name component" in tasks["bad prefix"]["msg"]
    write(tmp_path, "site.yml", "- hosts: all\n  tasks:\n    - unarchive: {src: a.tgz}\n")
    out, _ = apply(tmp_path)
    assert out.returncode == 4
    assert "dest" in out.stderr
