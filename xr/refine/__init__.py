"""Refinement of a draft by a small instruction LLM with a LoRA adapter (issue 6): `base` loads the LLM,
`prompt` builds its input, `guard` keeps its output safe, `refiner` runs it, `train` fits the adapter."""
