"""Turn padded jets into model inputs: byte sequences for BBT-Neutron, padded tensors for ParticleNet/ParT."""
