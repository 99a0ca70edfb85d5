"""brainalign.models (see DESIGN.md)."""
