"""Running work on many hosts in parallel."""
