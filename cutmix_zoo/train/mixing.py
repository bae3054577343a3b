"""Batch mixing on the device: CutMix, Mixup, Cutout, their feature-level variants, and DropBlock.

Every random number is drawn with torch on the batch's device from a dedicated generator, and
every decision (apply or not, the box, lam) stays a device tensor, so a training step never waits
for the host. CutMix follows the original ``train.py``: one lam and one box per batch, the box
side ``sqrt(1 - lam)`` times the image side centred uniformly and clipped, lam recomputed from
the clipped box, and the loss ``lam * CE(out, y) + (1 - lam) * CE(out, y[perm])``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..models import level_children
from .checkpoint import as_tuple

_GAMMA_CANDIDATES = 16


def stage_modules(model: nn.Module, family: str) -> list[nn.Module]:
    """The stages of a ``family`` network, in forward order: for each feature level after the stem
    (:func:`~cutmix_zoo.models.level_children`), the last block container (``nn.Sequential``) among its children, else
    its last child.

    In a ResNet each level's stage is ``layer1`` ... ``layer4``; PyramidNet's last level is ``layer3`` (``layer4`` on
    ImageNet), ``bn_final`` and ``relu_final``, and its stage is that ``layer``.
    """
    children = dict(model.named_children())
    stages = []
    for level in level_children(model, family)[1:]:
        containers = [children[name] for name in level if isinstance(children[name], nn.Sequential)]
        stages.append(containers[-1] if containers else children[level[-1]])
    return stages


def sample_gamma(shape: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """One Gamma(shape, 1) draw as a 0-d device tensor (Marsaglia-Tsang, vectorised, no host sync).

    Sixteen proposals are drawn at once and the first accepted one is kept; each is accepted with
    probability above 0.95, so all sixteen failing (then the first is used) has odds below 1e-20.
    Shapes below 1 use Gamma(a) = Gamma(a + 1) * U ** (1 / a).
    """
    boosted = shape < 1.0
    a = shape + 1.0 if boosted else shape
    d = a - 1.0 / 3.0
    c = 1.0 / (9.0 * d) ** 0.5
    z = torch.randn(_GAMMA_CANDIDATES, generator=generator, device=device)
    u = torch.rand(_GAMMA_CANDIDATES + 1, generator=generator, device=device)
    v = (1.0 + c * z) ** 3
    accepted = (v > 0) & (torch.log(u[:-1]) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(1e-30)))
    first = torch.argmax(accepted.to(torch.int32)).view(1)
    sample = d * v.index_select(0, first)[0].clamp_min(1e-6)  # v[first] with a 0-d index would call .item()
    if boosted:
        sample = sample * u[-1] ** (1.0 / shape)
    return sample


def sample_beta(alpha: float, beta: float, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """One Beta(alpha, beta) draw as a 0-d float32 device tensor, from two Gamma draws."""
    x = sample_gamma(alpha, generator, device)
    y = sample_gamma(beta, generator, device)
    return x / (x + y)


def _box_mask(size: tuple[int, int], lam: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The original's ``rand_bbox`` as a (H, W) bool mask: side sqrt(1 - lam) of each image side, centred uniformly, clipped."""
    device = lam.device
    rows, cols = size
    cut_rat = torch.sqrt(1.0 - lam)
    half_r = torch.floor(rows * cut_rat).long() // 2
    half_c = torch.floor(cols * cut_rat).long() // 2
    cr = torch.randint(rows, (), generator=generator, device=device)
    cc = torch.randint(cols, (), generator=generator, device=device)
    r = torch.arange(rows, device=device)
    c = torch.arange(cols, device=device)
    in_rows = (r >= (cr - half_r).clamp(0, rows)) & (r < (cr + half_r).clamp(0, rows))
    in_cols = (c >= (cc - half_c).clamp(0, cols)) & (c < (cc + half_c).clamp(0, cols))
    return in_rows[:, None] & in_cols[None, :]


def cutmix(x: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor, apply: torch.Tensor,
           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste one box of ``x[perm]`` into every image of ``x``; return the batch and lam recomputed from the box.

    ``apply`` (a 0-d bool tensor) switches the whole batch off, giving ``x`` unchanged and lam 1.
    """
    rows, cols = x.shape[-2:]
    mask = _box_mask((rows, cols), lam, generator) & apply
    mixed = torch.where(mask, x[perm], x)
    lam = 1.0 - mask.sum(dtype=torch.float32) / (rows * cols)
    return mixed, lam


def mixup(x: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor, apply: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend every image with its partner ``x[perm]`` by one lam per batch (lam 1 where ``apply`` is false)."""
    lam = torch.where(apply, lam, torch.ones_like(lam))
    return torch.lerp(x[perm], x, lam.to(x.dtype)), lam


def cutout(x: torch.Tensor, size: int, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Zero one ``size`` x ``size`` square per image (DeVries & Taylor), centred uniformly and clipped, each with probability ``prob``."""
    n, _, rows, cols = x.shape
    device = x.device
    cr = torch.randint(rows, (n, 1, 1), generator=generator, device=device)
    cc = torch.randint(cols, (n, 1, 1), generator=generator, device=device)
    keep_all = torch.rand(n, 1, 1, generator=generator, device=device) >= prob
    r = torch.arange(rows, device=device)[None, :, None]
    c = torch.arange(cols, device=device)[None, None, :]
    half = size // 2
    hole = (r >= cr - half) & (r < cr + half) & (c >= cc - half) & (c < cc + half) & ~keep_all
    return x.masked_fill(hole[:, None], 0)


@dataclass
class Mixed:
    """A mixed batch: the inputs, the partner labels and lam (``lam is None``: plain labels)."""

    x: torch.Tensor
    y_b: torch.Tensor | None = None
    lam: torch.Tensor | None = None


class BatchMixer:
    """Mixes each training batch the way a recipe says, with its own device generator.

    ``mode`` is ``cutmix``, ``mixup``, ``cutout``, ``cutout+mixup`` or ``none``; ``layers`` is
    ``input`` (mix images) or ``random`` (Feature CutMix / Manifold Mixup: mix the input or the
    output of one stage before the last, chosen uniformly per batch on the host). The generator is
    seeded identically on every rank, so like the original's one DataParallel batch, all ranks
    use the same lam and box.
    """

    def __init__(self, mode: str, beta: float, prob: float, cutout_size: int, device: torch.device,
                 seed: int, layers: str = "input", label_smoothing: float = 0.0) -> None:
        self.mode, self.beta, self.prob, self.cutout_size = mode, beta, prob, cutout_size
        self.layers, self.label_smoothing = layers, label_smoothing
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        self.host_rng = random.Random(seed)
        self._stages: list[nn.Module] = []
        self._pending: tuple[nn.Module, torch.Tensor] | None = None  # (the stage to mix after, the labels)
        self._result: Mixed | None = None

    @property
    def mixes_labels(self) -> bool:
        return self.mode in ("cutmix", "mixup", "cutout+mixup")

    def attach(self, model: nn.Module, family: str) -> None:
        """Hook the stages before the last of ``model``, a ``family`` network (:func:`stage_modules`), for feature-level mixing."""
        if self.layers != "random":
            return
        self._stages = stage_modules(model, family)[:-1]
        for stage in self._stages:
            stage.register_forward_hook(self._feature_hook)

    def _draw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        g = self.generator
        apply = torch.rand((), generator=g, device=x.device) < self.prob
        lam = sample_beta(self.beta, self.beta, g, x.device) if self.beta > 0 else torch.ones((), device=x.device)
        perm = torch.randperm(x.shape[0], generator=g, device=x.device)
        return apply & (self.beta > 0), lam, perm

    def _mix(self, x: torch.Tensor, y: torch.Tensor) -> Mixed:
        apply, lam, perm = self._draw(x)
        if self.mode == "cutmix":
            x, lam = cutmix(x, perm, lam, apply, self.generator)
        else:
            x, lam = mixup(x, perm, lam, apply)
        return Mixed(x, y[perm], lam)

    def _feature_hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if self._pending is None or not module.training:
            return None
        target, y = self._pending
        if module is not target:
            return None
        self._pending = None
        self._result = self._mix(output, y)
        return self._result.x

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> Mixed:
        """Mix a batch; for feature-level mixing the mix happens in the coming forward, read it with :meth:`collect`."""
        if self.mode in ("cutout", "cutout+mixup"):
            x = cutout(x, self.cutout_size, self.prob if self.mode == "cutout" else 1.0, self.generator)
        if not self.mixes_labels:
            return Mixed(x)
        if self._stages:
            level = self.host_rng.randrange(len(self._stages) + 1)
            if level > 0:
                self._pending = (self._stages[level - 1], y)
                self._result = None
                return Mixed(x)
        return self._mix(x, y)

    def collect(self, mixed: Mixed) -> Mixed:
        """The batch's final mixing record once the forward has run (feature mixing fills it in then)."""
        if self._result is not None:
            mixed, self._result = self._result, None
        return mixed

    def loss(self, logits: torch.Tensor, y: torch.Tensor, mixed: Mixed) -> torch.Tensor:
        """Cross-entropy (with label smoothing), mixed by lam as the original: ``lam * CE(y) + (1 - lam) * CE(y_b)``."""
        ce = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        if mixed.lam is None:
            return ce
        y_b = cast(torch.Tensor, mixed.y_b)  # set with lam
        return mixed.lam * ce + (1.0 - mixed.lam) * F.cross_entropy(logits, y_b, label_smoothing=self.label_smoothing)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "host_rng": self.host_rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.host_rng.setstate(as_tuple(state["host_rng"]))


class DropBlock:
    """DropBlock (Ghiasi et al., 2018) on the outputs of the last two stages, its drop rate ramped linearly over training.

    Uses the device's default generator (saved and restored with the checkpoint's RNG states).
    """

    def __init__(self, drop_prob: float, block_size: int) -> None:
        self.drop_prob, self.block_size = drop_prob, block_size
        self.progress = 0.0

    def attach(self, model: nn.Module, family: str) -> None:
        """Drop blocks from the outputs of the last two stages of ``model``, a ``family`` network (:func:`stage_modules`)."""
        for stage in stage_modules(model, family)[-2:]:
            stage.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs: tuple, x: torch.Tensor) -> torch.Tensor | None:
        p = self.drop_prob * min(1.0, self.progress)
        if not module.training or p <= 0:
            return None
        rows, cols = x.shape[-2:]
        block = min(self.block_size, rows, cols)
        gamma = p / block**2 * rows * cols / ((rows - block + 1) * (cols - block + 1))
        seeds = (torch.rand(x.shape[0], 1, rows - block + 1, cols - block + 1, device=x.device) < gamma).to(x.dtype)
        seeds = F.pad(seeds, (block // 2, (block - 1) // 2, block // 2, (block - 1) // 2))
        keep = 1.0 - F.max_pool2d(seeds, kernel_size=block, stride=1, padding=block // 2)
        keep = keep[..., :rows, :cols]
        return x * keep * (keep.numel() / keep.sum().clamp_min(1.0))
