"""Independent float64 loop references, written from semantics.md."""
