"""machineroom: a declarative playbook engine over SSH, with state you can query."""

__version__ = "0.1.0"
