"""Trained cells in other frameworks' formats (`jetscale export`)."""
