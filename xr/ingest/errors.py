class IngestError(ValueError):
    """Input we refuse. Its message is the one line shown to the user: no traceback, no identifiers."""
