"""brainalign.rsa (see DESIGN.md)."""
