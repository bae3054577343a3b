"""Make docs/cam.png, the CAM picture of docs/reports.md, with the real ``cutmix-zoo cam`` command.

It draws the class activation maps of the embedded Shapes-10 models, CutMix beside baseline, on
a Shapes-10 test image (saved as docs/shape.png). Run from the repository root:

    python docs/make_cam_png.py [CUTMIX BASELINE]

CUTMIX and BASELINE default to the registry's bundled ``pyramidnet20_a48.cutmix_shapes`` and
``pyramidnet20_a48.baseline_shapes``; a folder exported by ``cutmix-zoo train`` works as well.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

from cutmix_zoo.cli import main
from cutmix_zoo.shapes import Shapes

DOCS = Path(__file__).resolve().parent
SHOWN_CLASS = "cross"


def shape_image(path: Path) -> None:
    """The first image of SHOWN_CLASS in the Shapes-10 test split, as a PNG."""
    test = Shapes("test")
    index = test.targets.tolist().index(test.classes.index(SHOWN_CLASS))
    Image.fromarray(test.images[index].permute(1, 2, 0).numpy()).save(path)


if __name__ == "__main__":
    cutmix, baseline = sys.argv[1:3] if len(sys.argv) == 3 else ("pyramidnet20_a48.cutmix_shapes", "pyramidnet20_a48.baseline_shapes")
    shape_image(DOCS / "shape.png")
    raise SystemExit(main(["cam", str(DOCS / "shape.png"), "--model", cutmix, "--compare", baseline, "-o", str(DOCS / "cam.png")]))
