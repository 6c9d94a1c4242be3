"""Playbooks: the model and its loader."""
