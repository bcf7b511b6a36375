"""Primitives by family: each forward with its VJPs beside it."""
