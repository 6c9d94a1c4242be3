"""machineroom.state"""
