"""Data: built-in JoI generator (Pythia8 + fastjet + parametric detector), ingest of user files, splits."""
