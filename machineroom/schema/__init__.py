"""machineroom.schema"""
