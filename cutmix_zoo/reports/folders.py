"""Image-class trees (``<folder>/<class>/.../<image>``), read one way for every report and the trainer.

The rules are torchvision ImageFolder's: the classes are the folder's subfolders in sorted order (links followed); the
images of a class are the files under its folder, recursively (links followed), whose names end in one of
:func:`image_extensions` in any case, the folders walked in sorted order and each one's files in sorted order. A link
to a folder below a class folder is refused in one sentence: it leads outside the class (another class's images, or a
loop through ``..``) or to a folder inside it that is walked anyway, and ImageFolder would count those images twice or
under the wrong class; a class folder may itself be a link, and links to files are followed.
Reading refuses nothing else; each caller refuses what it cannot use, :meth:`ImageTree.require_classes` and
:meth:`ImageTree.require_images` saying so in the reports' sentences.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidArgumentError, ZooError


def image_extensions() -> tuple[str, ...]:
    """The file name endings taken as images: torchvision's ``IMG_EXTENSIONS``."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return tuple(IMG_EXTENSIONS)


def class_folders(folder: str | os.PathLike) -> list[str]:
    """The names of ``folder``'s subfolders (links followed), sorted: the classes of an image-class tree. A class link to
    ``folder`` itself or a folder above it is refused: it would hold every other class's images."""
    top = os.path.realpath(folder)
    names = []
    for entry in os.scandir(os.fspath(folder)):
        if entry.is_dir():
            target = os.path.realpath(entry.path)
            if entry.is_symlink() and os.path.commonpath([top, target]) == target:
                raise InvalidArgumentError(f"The class folder {entry.path} links to {target}, which holds the whole tree, so every "
                                           "image would be counted under it too; remove the link.")
            names.append(entry.name)
    return sorted(names)


def image_files(folder: str | os.PathLike) -> list[str]:
    """Every image file under ``folder`` (recursively, links to files followed), in ImageFolder's order, as paths joined to
    ``folder``; a link to a folder below it is refused (:func:`_walk`)."""
    extensions = image_extensions()
    return [os.path.join(root, name) for root, names in sorted(_walk(os.fspath(folder)))
            for name in sorted(names) if name.lower().endswith(extensions)]


def _walk(folder: str) -> list[tuple[str, list[str]]]:
    """``os.walk(folder, followlinks=True)``'s folders and file names, refusing a link to a folder anywhere below ``folder``:
    it leads either outside the class folder (another class's images, or a loop through ``..``) or to a folder inside it
    that is walked anyway, so its images would be counted twice or under the wrong class."""
    found = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        for name in dirs:
            path = os.path.join(root, name)
            if os.path.islink(path):
                target = os.path.realpath(path)
                where = "inside" if os.path.commonpath([os.path.realpath(folder), target]) == os.path.realpath(folder) else "outside"
                raise InvalidArgumentError(f"The folder link {path} leads to {target}, {where} its class folder {folder}, so its "
                                           "images would be counted twice or under the wrong class; remove the link or replace it "
                                           "with a copy of the images.")
        found.append((root, names))
    return found


@dataclass(frozen=True)
class ImageTree:
    """An image-class tree: its ``classes`` in sorted order and ``images[k]``, the image files of class k."""

    root: str | os.PathLike
    classes: list[str]
    images: list[list[str]]

    @property
    def paths(self) -> list[str]:
        """Every image, class by class."""
        return [path for paths in self.images for path in paths]

    @property
    def labels(self) -> list[int]:
        """The class index of each of :attr:`paths`."""
        return [k for k, paths in enumerate(self.images) for _ in paths]

    @property
    def samples(self) -> list[tuple[str, int]]:
        """``(path, class index)`` pairs, as an ImageFolder's ``samples``."""
        return [(path, k) for k, paths in enumerate(self.images) for path in paths]

    def empty_classes(self) -> list[str]:
        """The classes whose folder holds no image."""
        return [name for name, paths in zip(self.classes, self.images) if not paths]

    def require_classes(self, at_least: int, why: str, error: type[ZooError] = InvalidArgumentError) -> None:
        """Refuse a tree of fewer than ``at_least`` class folders in one sentence ending with ``why``."""
        count = len(self.classes)
        if count < at_least:
            raise error(f"{os.fspath(self.root)} has {count} class folder{'' if count == 1 else 's'}; {why}.")

    def require_images(self, error: type[ZooError] = InvalidArgumentError) -> None:
        """Refuse a tree with a class folder that holds no image, naming the first one."""
        for name in self.empty_classes():
            raise error(f"The class folder {Path(self.root) / name} holds no images ({', '.join(image_extensions()[:4])}, ...).")


def read_image_tree(folder: str | os.PathLike, classes: Sequence[str] | None = None) -> ImageTree:
    """The classes and images of the image-class tree ``folder`` (``classes``: those class folders only, in that order)."""
    names = class_folders(folder) if classes is None else list(classes)
    return ImageTree(folder, names, [image_files(os.path.join(folder, name)) for name in names])

