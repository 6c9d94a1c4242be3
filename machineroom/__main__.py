"""`python -m machineroom` runs the CLI."""

from machineroom.cli import main

main()
