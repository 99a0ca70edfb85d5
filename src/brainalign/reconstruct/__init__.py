"""brainalign.reconstruct (see DESIGN.md)."""
