"""brainalign.evaluate (see DESIGN.md)."""
