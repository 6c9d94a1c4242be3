"""machineroom.connection"""
