"""machineroom.lab"""
