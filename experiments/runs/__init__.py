"""Run folders (folders.py) and what is done with them: provenance of their configs, anomaly scores
and encodings (uses.py), ArviZ diagnostics (diagnose.py)."""
