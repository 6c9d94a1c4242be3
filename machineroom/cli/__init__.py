"""machineroom.cli"""
