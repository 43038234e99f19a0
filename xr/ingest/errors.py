from xr.errors import UserError


class IngestError(UserError):
    """Files we cannot take as a study."""
