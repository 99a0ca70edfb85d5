"""brainalign.train (see DESIGN.md)."""
