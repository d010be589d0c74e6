"""Models: the catalog (what exists), the store (what is on disk, verified), sources, converters."""
