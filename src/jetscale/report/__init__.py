"""Paper figures (figures.py), tables (tables.py) and the self-contained HTML study report (html.py)."""
