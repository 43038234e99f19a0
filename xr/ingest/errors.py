from contextlib import contextmanager

from xr.errors import UserError


class IngestError(UserError):
    """Files we cannot take as a study."""


@contextmanager
def parser_boundary(name: str, what: str):
    """Around calls into a parser of untrusted bytes (pydicom, PIL): a damaged file makes them raise
    almost any kind of exception, so each becomes a one-line refusal naming the file and the kind only
    (never the parser's message, which may quote header values such as the patient's name)."""
    try:
        yield
    except IngestError:
        raise
    except Exception as e:
        raise IngestError(f"{name}: {what} ({type(e).__name__})") from None
