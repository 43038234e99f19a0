"""Dataset layouts as published, read as they are on disk."""
