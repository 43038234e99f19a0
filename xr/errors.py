class UserError(ValueError):
    """Input or an action we refuse. Its message is the one line shown to the user: no traceback,
    no identifiers. Each layer has its own subclass (IngestError, StoreError, EvalInputError)."""
