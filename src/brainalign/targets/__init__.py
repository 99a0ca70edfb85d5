"""brainalign.targets (see DESIGN.md)."""
