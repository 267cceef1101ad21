"""Utilities every layer shares: validation helpers, atomic file writes, strict JSON, the numba cache guard."""
