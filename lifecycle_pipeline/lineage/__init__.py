"""Lineage value objects, canonical hashes and model fingerprints."""
