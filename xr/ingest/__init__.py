"""Ingest: files, folders and archives in; identifier-free, display-ready images out."""
from xr.ingest.errors import IngestError
from xr.ingest.image import IngestedImage
from xr.ingest.study import IngestedStudy, load_study, read_pixels

__all__ = ["IngestError", "IngestedImage", "IngestedStudy", "load_study", "read_pixels"]
