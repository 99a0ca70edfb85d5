"""brainalign.viz (see DESIGN.md)."""
