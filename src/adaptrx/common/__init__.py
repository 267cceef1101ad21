"""Utilities every layer shares: validation helpers (more to come from the package root)."""
