"""jetscale: scaling studies for particle-physics jet classifiers (Jet Origin Identification)."""

__version__ = "0.1.0"
