"""machineroom.inventory"""
