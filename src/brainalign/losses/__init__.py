"""brainalign.losses (see DESIGN.md)."""
