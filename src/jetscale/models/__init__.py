"""Jet classifiers: BBT-Neutron, ParticleNet, Particle Transformer (see registry.py)."""
