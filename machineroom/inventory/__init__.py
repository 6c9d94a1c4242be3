"""Inventories: the model, the YAML, INI and server-list loaders, and host patterns.

`load_inventory(path)` / `load_inventories(paths)` read any of the three formats into one
`Inventory`;
`select_hosts(inventory, pattern)` picks hosts as Ansible's patterns do.
"""

from machineroom.inventory.ini_inventory import (
    expand_ini_pattern,
    load_ini_inventory,
    parse_ini_inventory,
    parse_ini_value,
)
from machineroom.inventory.load import (
    check_inventory,
    inventory_format,
    load_inventories,
    load_inventory,
    merge_inventories,
    missing_key_files,
)
from machineroom.inventory.model import (
    VAULT_PREFIX,
    Group,
    Host,
    Inventory,
    InventoryWarning,
    Secret,
    TunnelProfile,
    TunnelType,
)
from machineroom.inventory.patterns import select_hosts
from machineroom.inventory.serverlist import (
    load_server_list,
    parse_password,
    parse_server_list,
    render_server_list,
)
from machineroom.inventory.yaml_inventory import (
    load_yaml_inventory,
    parse_yaml_inventory,
    render_yaml_inventory,
)

__all__ = [
    "VAULT_PREFIX",
    "Group",
    "Host",
    "Inventory",
    "InventoryWarning",
    "Secret",
    "TunnelProfile",
    "TunnelType",
    "check_inventory",
    "expand_ini_pattern",
    "inventory_format",
    "load_ini_inventory",
    "load_inventories",
    "load_inventory",
    "load_server_list",
    "load_yaml_inventory",
    "merge_inventories",
    "missing_key_files",
    "parse_ini_inventory",
    "parse_ini_value",
    "parse_password",
    "parse_server_list",
    "parse_yaml_inventory",
    "render_server_list",
    "render_yaml_inventory",
    "select_hosts",
]
