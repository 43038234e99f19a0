"""The store's image files: written first under a keyed name of their content hash (atomic rename) and
removed again if the transaction that records them fails, so nothing is half-saved."""
from __future__ import annotations

import io
import os

from PIL import Image as PILImage
from sqlalchemy import select, update

from db.models import Image
from db.session import transaction
from xr.config import Settings, keyed_hash
from xr.files import WriteError, discard, write_atomic
from xr.store.common import study_row


def image_path(s: Settings, content_hash: str) -> str:
    """Where an image is kept, relative to the data dir: named by the keyed hash of its pixels (the bare
    hash could be computed by anyone holding the film, and the name leaves with the fine-tuning export)."""
    name = keyed_hash(content_hash, s)
    return f"images/{name[:2]}/{name}.png"


def write_png(s: Settings, content_hash: str, pixels) -> tuple[str, bool]:
    """Returns (path relative to the data dir, created now?)."""
    rel = image_path(s, content_hash)
    path = s.data_dir / rel
    if path.exists():
        return rel, False
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="PNG")
    try:
        write_atomic(path, buf.getvalue())
    except WriteError as e:  # the file name is the image's content hash: nothing the user needs to read
        raise WriteError(f"cannot store the image: {e.reason}; nothing was saved", e.reason) from None
    return rel, True


def study_images(s: Settings, study_id: int) -> list[tuple[str, str]]:
    """(content hash, stored path relative to the data directory) of each image of a study."""
    with transaction(s.database_url, read_only=True) as session:
        return [(i.content_hash, i.storage_path) for i in study_row(session, study_id).images]


def rename_images(s: Settings) -> int:
    """Images stored under their bare pixel hash (before names were keyed) take their keyed names: a link
    under the new name, every row moved in one transaction, then the old name removed. Safe to run twice
    or in two processes at once. Returns how many names moved."""
    with transaction(s.database_url) as session:
        rows = session.execute(select(Image.storage_path, Image.content_hash).distinct()).all()
        moves = {old: image_path(s, h) for old, h in rows if old != image_path(s, h)}
        for old, new in moves.items():
            source, target = s.data_dir / old, s.data_dir / new
            if source.exists() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(source, target)
                except FileExistsError:
                    pass  # another process moved it first
                except OSError:  # a file system without hard links
                    write_atomic(target, source.read_bytes())
            session.execute(update(Image).where(Image.storage_path == old).values(storage_path=new))
    for old in moves:
        discard(s.data_dir / old)
    return len(moves)
