"""Training, in one place: the report generator, the finding head, the refiner, fine-tuning from edits."""
