"""Scaling-law fits: functional forms (forms.py), fitters (fitting.py), model comparison (compare.py),
study mode (study.py)."""
