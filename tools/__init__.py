"""Command-line simulators for vmsapp: NVR agents and a dashboard (SPEC §6)."""
