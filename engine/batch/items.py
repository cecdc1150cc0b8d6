"""What a batch works on: the image list, one unique bundle name per image, and each rank's shard."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..errors import EngineError

T = TypeVar("T")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class BatchItem:
    """One image of the batch; `name` is its bundle folder under the output directory."""

    index: int
    name: str
    image: Path


def list_images(source: Path) -> list[Path]:
    """Images of a folder (sorted, not recursive, hidden files skipped) or of a list file.

    A list file holds one path per line, relative to the file; blank lines and `#` comments are skipped.
    Unreadable images are kept: they fail as items, not as the batch.
    """
    if source.is_dir():
        return sorted(p for p in source.iterdir()
                      if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
    try:
        lines = source.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EngineError(f"not a folder or a readable image list ({exc})", source) from exc
    return [source.parent / line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def make_items(images: list[Path]) -> list[BatchItem]:
    """Items in list order, named after the image stem; repeated stems get `_2`, `_3`… in list order."""
    if not images:
        raise EngineError("no images to process")
    taken: set[str] = set()
    items = []
    for index, image in enumerate(images):
        name, n = image.stem, 1
        while name.lower() in taken:  # case-insensitive file systems would merge `A` and `a`
            n += 1
            name = f"{image.stem}_{n}"
        taken.add(name.lower())
        items.append(BatchItem(index, name, image))
    return items


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Rank r takes items r, r + W, r + 2W… (the official `independent` mode's image assignment)."""
    return list(items[rank::world_size])
