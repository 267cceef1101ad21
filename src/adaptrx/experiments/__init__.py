"""Experiments: paired virtual trials, their statistics and committed reports."""
