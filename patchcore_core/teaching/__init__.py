"""Helpers for the teaching notebooks: what they draw, compute and check."""
