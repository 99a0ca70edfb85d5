"""Workflows that combine the layers: the demo, simulations (top layer, beside the CLI)."""
