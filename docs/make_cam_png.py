"""Make docs/cam.png, the README's CAM picture, with the real ``cutmix-zoo cam`` command and no downloads.

No pretrained weights can be fetched where this picture was made, so both panels use stand-ins
in the ResNet-50 layout, written to a temporary folder and passed with --weights/--weights2:

- left, "bright": weights constructed so that the last feature map measures brightness and the
  classifier reads it as "golf ball" (every block's residual branch is silenced, the stem and the
  shortcuts carry one brightness channel to layer4);
- right, "random": torchvision's random initialisation, i.e. a model that has learned nothing.

Run from the repository root: ``python docs/make_cam_png.py``. It also writes docs/golf.png.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
import torchvision
from PIL import Image, ImageDraw
from safetensors.torch import save_file

from cutmix_zoo.categories import categories
from cutmix_zoo.cli import main

DOCS = Path(__file__).resolve().parent
GOLF_BALL = categories("imagenet-1k").index("golf ball")


def golf_scene(path: Path) -> None:
    """A mown lawn with a white ball and a flag, drawn with PIL (512 x 384)."""
    image = Image.new("RGB", (512, 384))
    draw = ImageDraw.Draw(image)
    for stripe in range(8):
        shade = (70, 150, 60) if stripe % 2 else (55, 125, 50)
        draw.rectangle((stripe * 64, 0, stripe * 64 + 63, 383), fill=shade)
    draw.ellipse((70, 250, 130, 270), fill=(20, 30, 20))  # the hole
    draw.line((100, 260, 100, 90), fill=(150, 110, 60), width=4)  # the flagstick
    draw.polygon([(102, 90), (170, 110), (102, 130)], fill=(210, 30, 40))
    draw.ellipse((300, 170, 400, 270), fill=(245, 245, 240))  # the ball
    draw.ellipse((330, 190, 360, 215), fill=(255, 255, 255))
    image.save(path)


def brightness_state() -> dict[str, torch.Tensor]:
    """ResNet-50 weights whose layer4 channel 0 is the locally averaged, ReLU'd brightness of the input."""
    state = {k: torch.zeros_like(v) for k, v in torchvision.models.resnet50().state_dict().items()}
    for key, value in state.items():
        if key.endswith("running_var"):
            value.fill_(1.0)
    state["conv1.weight"][0] = 1.0 / 49  # channel 0: mean of the 7x7 window, summed over colours
    state["bn1.weight"][0] = 1.0
    for stage, blocks in enumerate([3, 4, 6, 3], 1):  # residual branches stay silent (bn3 all zero)
        state[f"layer{stage}.0.downsample.0.weight"][0, 0] = 1.0
        state[f"layer{stage}.0.downsample.1.weight"][0] = 1.0
    state["fc.weight"][GOLF_BALL, 0] = 30.0  # scaled so that the prediction is confident
    return state


def random_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torchvision.models.resnet50().state_dict()


if __name__ == "__main__":
    golf_scene(DOCS / "golf.png")
    with tempfile.TemporaryDirectory() as tmp:
        save_file(brightness_state(), Path(tmp) / "bright.safetensors")
        save_file(random_state(), Path(tmp) / "random.safetensors")
        raise SystemExit(main([
            "cam", str(DOCS / "golf.png"), "--model", "resnet50", "--weights", str(Path(tmp) / "bright.safetensors"),
            "--compare", "resnet50.baseline_in1k", "--weights2", str(Path(tmp) / "random.safetensors"),
            "-o", str(DOCS / "cam.png"),
        ]))
