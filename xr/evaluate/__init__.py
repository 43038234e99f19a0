"""Evaluation: how the field measures report quality, and the floors every model must beat."""
