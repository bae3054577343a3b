"""Class activation maps: size, normalisation, the peak on a known object, and the cam command's picture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

import cutmix_zoo
from cutmix_zoo.cli import main
from cutmix_zoo.errors import InvalidArgumentError
from cutmix_zoo.reports.cam import cam, class_activation, jet

import tiny

BRIGHT_CLASS = 3  # "cat" in CIFAR-10
SQUARE = (56, 16, 80, 40)  # left, top, right, bottom of the white square in the 96 x 64 test image


def brightness_state() -> dict[str, torch.Tensor]:
    """Weights for the tiny PyramidNet whose CAM for BRIGHT_CLASS is, by construction, the image's brightness.

    Zeroing the last batch norm of every block makes each block the identity (its shortcut is the
    input, average-pooled where the block strides, zero-padded in channels). The stem's channel 0
    sums the colour channels at each pixel, the final batch norm passes that channel alone, and
    the classifier reads it for BRIGHT_CLASS only. So the last feature map is the ReLU of the
    average-pooled brightness, and its bright cells are exactly where the white square is.
    """
    state = {k: v.clone() for k, v in tiny.state_dict(seed=0).items()}
    for key, value in state.items():
        if ".bn3." in key and key.endswith(("weight", "bias")):
            value.zero_()
    state["conv1.weight"].zero_()
    state["conv1.weight"][0, :, 1, 1] = 1.0
    for bn in ("bn1", "bn_final"):
        state[f"{bn}.running_mean"].zero_()
        state[f"{bn}.running_var"].fill_(1.0)
        state[f"{bn}.bias"].zero_()
        state[f"{bn}.weight"].fill_(1.0 if bn == "bn1" else 0.0)
    state["bn_final.weight"][0] = 1.0
    state["fc.weight"].zero_()
    state["fc.weight"][BRIGHT_CLASS, 0] = 1.0
    state["fc.bias"].zero_()
    return state


@pytest.fixture
def bright_file(tiny_registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    from safetensors.torch import save_file

    path = tmp_path / "bright.safetensors"
    save_file(brightness_state(), path)
    return path


@pytest.fixture
def bright_model(bright_file: Path) -> torch.nn.Module:
    return cutmix_zoo.load(tiny.FILE_ENTRY, weights=bright_file)


@pytest.fixture
def square_image(tmp_path: Path) -> Path:
    """A dark 96 x 64 image with a white square at SQUARE."""
    image = Image.new("RGB", (96, 64), (20, 20, 20))
    image.paste((255, 255, 255), SQUARE)
    path = tmp_path / "square.png"
    image.save(path)
    return path


def test_cam_peaks_on_the_bright_square(bright_model, square_image):
    result = class_activation(bright_model, square_image)
    heat = result.map
    assert heat.shape == (64, 96) and heat.dtype == torch.float32
    assert heat.min() == 0 and heat.max() == 1
    assert result.class_index == BRIGHT_CLASS and result.probability > 0.1
    y, x = divmod(int(heat.argmax()), heat.shape[1])
    left, top, right, bottom = SQUARE
    assert left <= x < right and top <= y < bottom
    inside = heat[top + 4:bottom - 4, left + 4:right - 4]
    assert inside.min() > 0.5 and heat[:, :32].max() < 0.05  # hot on the object, cold far from it
    assert torch.equal(cam(bright_model, Image.open(square_image), class_index=BRIGHT_CLASS), heat)


def test_a_class_the_features_do_not_feed_has_a_flat_map(bright_model, square_image):
    assert torch.equal(cam(bright_model, square_image, class_index=5), torch.zeros(64, 96))
    with pytest.raises(InvalidArgumentError, match="Class 10 does not exist"):
        cam(bright_model, square_image, class_index=10)
    with pytest.raises(InvalidArgumentError, match=r"must be a \(3, H, W\) or \(1, 3, H, W\) tensor, not one of shape \(1, 32, 32\)"):
        cam(bright_model, torch.zeros(1, 32, 32))


def test_resnet_cam_is_the_classifier_weighted_last_feature_map(resnet50_file):
    model = cutmix_zoo.load("resnet50", weights=resnet50_file)
    torch.manual_seed(0)
    x = torch.randn(3, 80, 64)
    heat = cam(model, x)
    assert heat.shape == (80, 64) and heat.min() == 0 and heat.max() == 1
    with torch.no_grad():
        top = int(model(x[None]).argmax())
        [features] = cutmix_zoo.load("resnet50", weights=resnet50_file, features_only=True, out_indices=[-1])(x[None])
    weighted = torch.einsum("c,chw->hw", model.fc.weight[top].detach(), features[0])
    expected = torch.nn.functional.interpolate(weighted[None, None], size=(80, 64), mode="bilinear", align_corners=False)[0, 0]
    expected = (expected - expected.min()) / (expected.max() - expected.min())
    torch.testing.assert_close(heat, expected, atol=1e-4, rtol=0)
    assert class_activation(model, x).class_index == top
    assert cam(model, Image.new("RGB", (48, 40), (90, 30, 200))).shape == (40, 48)


def test_jet_runs_from_blue_through_green_to_red():
    colours = jet(torch.tensor([0.0, 0.5, 1.0])).tolist()
    assert colours == [[0, 0, 128], [128, 255, 128], [128, 0, 0]]


def test_cam_command_writes_the_picture(bright_file, square_image, tmp_path, capsys):
    out = tmp_path / "cam.png"
    assert main(["cam", str(square_image), "--model", tiny.FILE_ENTRY, "--weights", str(bright_file), "-o", str(out)]) == 0
    assert f"{tiny.FILE_ENTRY} with bright.safetensors: class 3 cat" in capsys.readouterr().out
    picture = Image.open(out)
    # 96 x 64 is enlarged 5x (shorter side to at least 320); the font is 480 / 24 = 20 px, a line 25 px,
    # and the title bar holds two lines (class, model) and half a line of margin: 62 px. The input as it is
    # comes first, then 8 white pixels, then the map over the input.
    assert picture.size == (480 + 8 + 480, 62 + 320)
    assert picture.getpixel((5 * 68, 62 + 5 * 28)) == (255, 255, 255)  # the input's white square, not hidden
    assert picture.getpixel((5 * 10, 62 + 5 * 32)) == (20, 20, 20)
    red, green, blue = picture.getpixel((488 + 5 * 68, 62 + 5 * 28))  # centre of the square: hot
    assert red > green + 50 and red > blue + 50
    red, green, blue = picture.getpixel((488 + 5 * 10, 62 + 5 * 32))  # far left: cold
    assert blue > red


def test_cam_command_compares_two_models_side_by_side(bright_file, square_image, tmp_path, capsys):
    out = tmp_path / "compare.png"
    argv = ["cam", str(square_image), "--model", tiny.FILE_ENTRY, "--weights", str(bright_file),
            "--compare", tiny.FOLDER_ENTRY, "--weights2", str(bright_file), "--class", "3", "-o", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().out.count("class 3 cat") == 2
    picture = Image.open(out)
    assert picture.size == (2 * 968 + 8, 382)  # two panels, each the input beside its map
    assert picture.getpixel((968 + 4, 100)) == (255, 255, 255)  # the gap between the panels
    assert picture.crop((0, 62, 968, 382)).tobytes() == picture.crop((976, 62, 1944, 382)).tobytes()


def test_cam_command_errors(bright_file, square_image, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not an image")
    common = ["--model", tiny.FILE_ENTRY, "--weights", str(bright_file)]
    cases = [
        ([str(tmp_path / "notes.txt"), *common, "-o", str(tmp_path / "a.png")], "is not an image file"),
        ([str(square_image), *common, "-o", str(tmp_path / "a.unknown")], "Cannot tell an image format"),
        ([str(square_image), *common, "-o", str(tmp_path / "no" / "a.png")], "does not exist"),
        ([str(square_image), *common, "--class", "99", "-o", str(tmp_path / "a.png")], "Class 99 does not exist"),
        ([str(square_image), "--model", "resnet5", "-o", str(tmp_path / "a.png")], "Unknown model 'resnet5'"),
    ]
    for argv, message in cases:
        assert main(["cam", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("cutmix-zoo: error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "a.png").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["cam", "--help"])
    assert exit_info.value.code == 0 and "usage: cutmix-zoo cam" in capsys.readouterr().out


def test_render_works_with_the_bitmap_font_of_older_pillow(monkeypatch, square_image):
    from PIL import ImageFont

    from cutmix_zoo.reports.cam import render

    load_default = ImageFont.load_default

    def without_size(size=None):
        if size is not None:
            raise TypeError("load_default() got an unexpected keyword argument 'size'")
        return load_default()

    monkeypatch.setattr(ImageFont, "load_default", without_size)
    assert render(square_image, torch.rand(64, 96), "cat (50.0%)\nmodel").size == (968, 382)
