"""The task modules, found by name. Imported lazily: a run loads only the modules it uses."""

from __future__ import annotations

import importlib

from machineroom.modules.base import Module

# task name -> "module:Class". `ansible.builtin.NAME` and `ansible.legacy.NAME` resolve here too.
MODULES: dict[str, str] = {
    # files
    "copy": "machineroom.modules.copy:CopyModule",
    "template": "machineroom.modules.template:TemplateModule",
    "file": "machineroom.modules.file:FileModule",
    "lineinfile": "machineroom.modules.lineinfile:LineinfileModule",
    "blockinfile": "machineroom.modules.blockinfile:BlockinfileModule",
    "authorized_key": "machineroom.modules.authorized_key:AuthorizedKeyModule",
    "replace": "machineroom.modules.replace:ReplaceModule",
    "find": "machineroom.modules.find:FindModule",
    "slurp": "machineroom.modules.slurp:SlurpModule",
    "fetch": "machineroom.modules.fetch:FetchModule",
    "get_url": "machineroom.modules.get_url:GetUrlModule",
    "unarchive": "machineroom.modules.unarchive:UnarchiveModule",
    "tempfile": "machineroom.modules.tempfile:TempfileModule",
    # commands and system
    "command": "machineroom.modules.command:CommandModule",
    "shell": "machineroom.modules.command:ShellModule",
    "raw": "machineroom.modules.raw:RawModule",
    "script": "machineroom.modules.script:ScriptModule",
    "package": "machineroom.modules.package:PackageModule",
    "apt": "machineroom.modules.package:AptModule",
    "package_facts": "machineroom.modules.package_facts:PackageFactsModule",
    "apt_key": "machineroom.modules.apt_key:AptKeyModule",
    "apt_repository": "machineroom.modules.apt_repository:AptRepositoryModule",
    "deb822_repository": "machineroom.modules.deb822_repository:Deb822RepositoryModule",
    "service": "machineroom.modules.service:ServiceModule",
    "systemd": "machineroom.modules.systemd:SystemdModule",
    "service_facts": "machineroom.modules.service_facts:ServiceFactsModule",
    "sysctl": "machineroom.modules.sysctl:SysctlModule",
    "cron": "machineroom.modules.cron:CronModule",
    "timezone": "machineroom.modules.timezone:TimezoneModule",
    "hostname": "machineroom.modules.hostname:HostnameModule",
    "mount": "machineroom.modules.mount:MountModule",
    "pip": "machineroom.modules.pip:PipModule",
    "reboot": "machineroom.modules.reboot:RebootModule",
    "user": "machineroom.modules.user:UserModule",
    "group": "machineroom.modules.group:GroupModule",
    "wait_for": "machineroom.modules.wait_for:WaitForModule",
    "async_status": "machineroom.modules.async_status:AsyncStatusModule",
    "add_host": "machineroom.modules.add_host:AddHostModule",
    "group_by": "machineroom.modules.add_host:GroupByModule",
    "stat": "machineroom.modules.stat:StatModule",
    "facts": "machineroom.modules.facts:FactsModule",
    "compose": "machineroom.modules.compose:ComposeModule",
    "docker_containers": "machineroom.modules.docker_containers:DockerContainersModule",
    "ping": "machineroom.modules.facts:PingModule",
    "collect": "machineroom.modules.collect:CollectModule",
    "uri": "machineroom.modules.uri:UriModule",
    "git": "machineroom.modules.git:GitModule",
    "getent": "machineroom.modules.getent:GetentModule",
    # local: never contact the host
    "debug": "machineroom.modules.local:DebugModule",
    "assert": "machineroom.modules.local:AssertModule",
    "fail": "machineroom.modules.local:FailModule",
    "set_fact": "machineroom.modules.local:SetFactModule",
    "meta": "machineroom.modules.local:MetaModule",
    "record": "machineroom.modules.local:RecordModule",
    "include_vars": "machineroom.modules.include_vars:IncludeVarsModule",
    "pause": "machineroom.modules.pause:PauseModule",
}
# other names users write for the same modules
ALIASES: dict[str, str] = {
    "setup": "facts",
    "gather_facts": "facts",
    "systemd_service": "systemd",
    # the collections these modules moved to (ansible.posix, community.general)
    "ansible.posix.authorized_key": "authorized_key",
    "ansible.posix.mount": "mount",
    "ansible.posix.sysctl": "sysctl",
    "community.general.timezone": "timezone",
}
NAMESPACES = ("ansible.builtin.", "ansible.legacy.", "machineroom.")

_loaded: dict[str, Module] = {}


def without_namespace(name: str) -> str:
    """`ansible.builtin.copy` -> `copy`; a name in no namespace of ours as it is."""
    for prefix in NAMESPACES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def canonical_name(name: str) -> str | None:
    """The module name a task name refers to (`ansible.builtin.copy` -> copy), or None."""
    name = without_namespace(name)
    name = ALIASES.get(name, name)
    return name if name in MODULES else None


def known_names() -> list[str]:
    """Every name a task may use for a module (for "did you mean" suggestions)."""
    return sorted({*MODULES, *ALIASES})


def get_module(name: str) -> Module | None:
    """The module instance for a task name, or None when there is no such module. A name
    machineroom lacks may be one ansible-core runs (modules/ansible_fallback.py)."""
    canonical = canonical_name(name)
    if canonical is None:
        from machineroom.modules.ansible_fallback import fallback_module

        return fallback_module(name)
    if canonical not in _loaded:
        module_path, class_name = MODULES[canonical].split(":")
        cls = getattr(importlib.import_module(module_path), class_name)
        _loaded[canonical] = cls()
    return _loaded[canonical]
