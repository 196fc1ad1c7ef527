"""Per-run evaluation (metrics.py) and the study-wide tidy table (collect.py)."""
