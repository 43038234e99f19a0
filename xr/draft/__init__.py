"""Drafting: a study in, a draft report with its evidence out."""
