"""Robustness and uncertainty of classifiers on your own validation images, as the CutMix paper's section 4.3 measures them.

``evaluate(models, images, labels, classes)`` runs, for every model, on the same images:

- **clean**: top-1 error of the images as they are (the model's eval transform).
- **occlusion** (the paper's Figure 4a): *centre* occlusion zeroes a centred square hole of side ``s``;
  *boundary* occlusion zeroes everything but a centred square of side ``s``; ``s`` runs from 0 to the
  input's side (``hole_steps`` equal steps). Zero is taken **in the normalised input space**, so an
  occluded pixel is the dataset's mean colour (0 after ``Normalize(mean, std)``), as zeroing the
  network's input tensor does. Centre occlusion at size 0 and boundary occlusion at the full size are
  the clean images, so their error is exactly the clean error.
- **in-between class samples** (Figure 4b): each image ``a`` is paired with another image ``b`` of a
  different class, and blended with mixing ratio ``lam`` (the weight of ``a``) from 0 to 1: *Mixup*
  ``lam * a + (1 - lam) * b``; *CutMix* ``a`` with a square patch of ``b`` covering ``1 - lam`` of the
  area pasted at a random place (the same places for every model). The paper reports "the probability
  to predict neither of the two classes"; here ``mixup_err``/``cutmix_err`` is the percentage of blends
  whose top-1 prediction is neither ``a``'s nor ``b``'s class, and ``*_neither_in_top2`` the stricter
  variant where neither class is among the two most probable.
- **FGSM** (Goodfellow et al.): one signed-gradient step of ``epsilon`` in pixel space (8/255 in the
  paper), clipped to valid pixels, against the cross-entropy of the true class; top-1 accuracy.
- **out-of-distribution detection** with the maximum softmax probability (Hendrycks and Gimpel), the
  validation images being the positives, against generated noise images in pixel space, ``gaussian``
  (i.i.d. N(0.5, 1) clipped to [0, 1]) and ``uniform`` (i.i.d. U(0, 1)), as in ODIN, and optionally a
  folder of other images: TNR at 95% TPR, AUROC and detection accuracy
  (``max over thresholds of (TPR + TNR) / 2``), as fractions in [0, 1].

Errors and accuracies are percentages. Every image is decoded once: each batch is read and put through
each distinct eval transform once, and every model and every measure (every occlusion size included)
runs from those tensors.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ..api import transforms
from ..errors import InvalidArgumentError
from ..model_config import pretrained_cfg_of
from .folders import image_files, read_image_tree
from .inference import eval_mode
from .predict import class_names, normal_class_name, open_image, resolve_model

if TYPE_CHECKING:
    from .predict import ImageLike

MEASURES = ("occlusion", "in_between", "fgsm", "ood")
DEFAULT_EPSILON = 8 / 255
DEFAULT_HOLE_STEPS = 8
DEFAULT_RATIOS = 11  # 0, 0.1, ..., 1
NOISE_KINDS = ("gaussian", "uniform")
TPR_LEVEL = 0.95


# --- the validation folder -----------------------------------------------------------------------------------

def read_validation_folder(folder: str | os.PathLike, limit: int | None = None,
                           seed: int = 0) -> tuple[list[str], list[int], list[str]]:
    """The images, labels and class names of ``FOLDER/val/<class>/...``, an image-class tree read by
    :func:`cutmix_zoo.reports.folders.read_image_tree` (ImageFolder's rules: classes in sorted order);
    with ``limit``, a random subset of that many images drawn with ``seed``, in the folder's order.

    Files without an image extension are skipped, as torchvision's ImageFolder does; a folder without
    ``val/``, fewer than two class folders, a class folder without images, or a subset of one class is
    an InvalidArgumentError.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InvalidArgumentError(f"The data folder {root} does not exist or is not a folder.")
    val = root / "val"
    if not val.is_dir():
        raise InvalidArgumentError(f"{root} has no val/ folder: the validation images go in {val}/<class>/<image>, one folder per class.")
    tree = read_image_tree(val)
    tree.require_classes(2, "robustness needs at least two classes (in-between class samples mix two)")
    tree.require_images()
    images, labels = tree.paths, tree.labels
    if limit and limit < len(images):
        keep = sorted(torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:limit].tolist())
        images, labels = [images[i] for i in keep], [labels[i] for i in keep]
        if len(set(labels)) < 2:
            raise InvalidArgumentError(f"--limit {limit} keeps images of one class only; robustness needs at least two classes.")
    return images, labels, tree.classes


def read_image_folder(folder: str | os.PathLike) -> list[str]:
    """Every image file under ``folder`` (recursively, in ImageFolder's order): the out-of-distribution images of ``--ood``."""
    root = Path(folder)
    if not root.is_dir():
        raise InvalidArgumentError(f"The out-of-distribution folder {root} does not exist or is not a folder.")
    found = image_files(root)
    if not found:
        raise InvalidArgumentError(f"The out-of-distribution folder {root} holds no images.")
    return found


def label_map(model: nn.Module, classes: Sequence[str]) -> tuple[torch.Tensor, str]:
    """The model's class index of each data class, and how it was found.

    ``"class names"`` when every data class is one of the model's class names (ignoring case, ``_`` and
    ``-``), so a folder may hold a subset of the model's classes in any order; else ``"folder order"``
    (the k-th folder in sorted order is class k, as the trainer reads an ImageFolder), which needs as
    many folders as the model has classes.
    """
    names = [normal_class_name(n) for n in class_names(model)]
    wanted = [normal_class_name(c) for c in classes]
    if len(set(names)) == len(names) and all(w in names for w in wanted) and len(set(wanted)) == len(wanted):
        return torch.tensor([names.index(w) for w in wanted]), "class names"
    cfg = pretrained_cfg_of(model)
    num_classes = cfg["num_classes"]
    if len(classes) != num_classes:
        raise InvalidArgumentError(
            f"{cfg['name']} has {num_classes} classes but the data has {len(classes)} class folders whose names "
            f"are not all its class names: name the folders after its classes, or give one folder per class in its order.")
    return torch.arange(num_classes), "folder order"


# --- the perturbations -----------------------------------------------------------------------------------------

def hole_sizes(side: int, steps: int = DEFAULT_HOLE_STEPS) -> list[int]:
    """``steps + 1`` hole sizes in pixels from 0 to ``side`` (the full input), evenly spaced."""
    if not isinstance(steps, int) or steps < 1:
        raise InvalidArgumentError(f"The number of hole-size steps must be a positive integer, not {steps!r}.")
    return sorted({round(i * side / steps) for i in range(steps + 1)})


def mixing_ratios(count: int = DEFAULT_RATIOS) -> list[float]:
    """``count`` mixing ratios evenly spaced from 0 to 1."""
    if not isinstance(count, int) or count < 2:
        raise InvalidArgumentError(f"The number of mixing ratios must be an integer of at least 2, not {count!r}.")
    return [round(i / (count - 1), 6) for i in range(count)]


def square(height: int, width: int, size: int, device: torch.device | None = None) -> torch.Tensor:
    """An (H, W) float mask, 1 in the centred ``size`` x ``size`` square (clipped to the input), 0 elsewhere."""
    mask = torch.zeros(height, width, device=device)
    h, w = min(size, height), min(size, width)
    top, left = (height - h) // 2, (width - w) // 2
    mask[top:top + h, left:left + w] = 1
    return mask


def occlusion_masks(height: int, width: int, sizes: Sequence[int], kind: str, device: torch.device | None = None) -> torch.Tensor:
    """(K, 1, H, W) multiplicative masks: ``centre`` zeroes the centred square of each size, ``boundary`` all but it."""
    if kind not in ("centre", "boundary"):
        raise InvalidArgumentError(f"Occlusion is 'centre' or 'boundary', not {kind!r}.")
    inside = torch.stack([square(height, width, s, device) for s in sizes])[:, None]
    return 1 - inside if kind == "centre" else inside


def cutmix_masks(height: int, width: int, lam: float, where: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) masks, 1 on a ``sqrt(1 - lam)``-sided patch (``1 - lam`` of the area) at the places ``where`` (N, 2) in [0, 1)."""
    side = math.sqrt(max(0.0, 1 - lam))
    h, w = round(height * side), round(width * side)
    top = (where[:, 0] * (height - h + 1)).floor().long().clamp(0, height - h)
    left = (where[:, 1] * (width - w + 1)).floor().long().clamp(0, width - w)
    rows = torch.arange(height, device=where.device)
    cols = torch.arange(width, device=where.device)
    inside_rows = (rows[None] >= top[:, None]) & (rows[None] < (top + h)[:, None])
    inside_cols = (cols[None] >= left[:, None]) & (cols[None] < (left + w)[:, None])
    return (inside_rows[:, :, None] & inside_cols[:, None, :]).float()[:, None]


def partners(labels: Sequence[int]) -> list[int] | None:
    """For each image of a batch, the next one (cyclically) of another class; None when the batch has only one class."""
    n = len(labels)
    out = []
    for i in range(n):
        j = next((k % n for k in range(i + 1, i + n) if labels[k % n] != labels[i]), None)
        if j is None:
            return None
        out.append(j)
    return out


def noise_images(kind: str, count: int, size: tuple[int, int], seed: int, batch_size: int) -> Iterable[torch.Tensor]:
    """Batches of generated out-of-distribution images in pixel space [0, 1], (B, 3, H, W), the same for every model."""
    g = torch.Generator().manual_seed(seed + NOISE_KINDS.index(kind) + 1)
    for start in range(0, count, batch_size):
        shape = (min(batch_size, count - start), 3, *size)
        if kind == "gaussian":
            yield (0.5 + torch.randn(shape, generator=g)).clamp(0, 1)
        else:
            yield torch.rand(shape, generator=g)


# --- out-of-distribution metrics -------------------------------------------------------------------------------

@dataclass(frozen=True)
class OodMetrics:
    """How well the maximum softmax score tells out-of-distribution inputs apart, as fractions in [0, 1]."""

    tnr_at_95_tpr: float
    auroc: float
    detection_acc: float

    def rounded(self, digits: int = 6) -> OodMetrics:
        """The metrics rounded to ``digits`` decimals, as the report holds them."""
        return OodMetrics(*(round(v, digits) for v in (self.tnr_at_95_tpr, self.auroc, self.detection_acc)))


def ood_metrics(in_scores: torch.Tensor, out_scores: torch.Tensor) -> OodMetrics:
    """Detection of out-of-distribution inputs by a score that is higher in distribution (positives).

    ``tnr_at_95_tpr``: the fraction of outside scores below the largest threshold that keeps at least 95% of
    the inside scores at or above it; ``auroc``: the probability that an inside score exceeds an outside one
    (ties count half); ``detection_acc``: the best ``(TPR + TNR) / 2`` over all thresholds.
    """
    inside = in_scores.double().flatten().sort().values
    outside = out_scores.double().flatten().sort().values
    if not len(inside) or not len(outside):
        raise InvalidArgumentError("Out-of-distribution metrics need scores inside and outside the distribution.")
    n_in, n_out = len(inside), len(outside)
    threshold = inside[int(math.floor((1 - TPR_LEVEL) * n_in + 1e-9))]
    tnr = float((outside < threshold).double().mean())
    below = torch.searchsorted(inside, outside, right=False)  # inside scores below each outside score
    not_above = torch.searchsorted(inside, outside, right=True)
    auroc = float(((n_in - not_above).double() + 0.5 * (not_above - below).double()).sum() / (n_in * n_out))
    candidates = torch.cat([inside, outside, inside.new_tensor([math.inf])]).unique()
    tpr = 1 - torch.searchsorted(inside, candidates, right=False).double() / n_in  # P(inside >= t)
    tnr_all = torch.searchsorted(outside, candidates, right=False).double() / n_out  # P(outside < t)
    detection = float((0.5 * (tpr + tnr_all)).max())
    return OodMetrics(tnr, auroc, detection)


# --- the results -----------------------------------------------------------------------------------------------

IN_BETWEEN_DEFINITION = ("percentage of blends of an image a (weight lam) with an image b of another class whose top-1 class "
                         "is neither a's nor b's")
OCCLUSION_FILL = "0 in the normalised input (the dataset's mean colour)"


@dataclass(frozen=True)
class CleanResult:
    """Top-1 error and accuracy (percentages) of the images as they are."""

    top1_err: float | None
    top1_acc: float | None
    images: int


@dataclass(frozen=True)
class OcclusionResult:
    """Top-1 error (percentages) at each hole size, of centre and of boundary occlusion."""

    hole_sizes: list[int]
    centre_top1_err: list[float | None]
    boundary_top1_err: list[float | None]

    def top1_err(self, kind: str) -> list[float | None]:
        """The errors of ``centre`` or of ``boundary`` occlusion."""
        return self.centre_top1_err if kind == "centre" else self.boundary_top1_err


@dataclass(frozen=True)
class InBetweenResult:
    """How often (percentages) a blend of two images of different classes is predicted as neither, at each mixing ratio."""

    ratios: list[float]
    pairs: int
    definition: str
    mixup_err: list[float | None]
    cutmix_err: list[float | None]
    mixup_neither_in_top2: list[float | None]
    cutmix_neither_in_top2: list[float | None]

    def err(self, kind: str) -> list[float | None]:
        """The "neither class" percentages of ``mixup`` or of ``cutmix`` blends."""
        return self.mixup_err if kind == "mixup" else self.cutmix_err


@dataclass(frozen=True)
class FgsmResult:
    """Top-1 accuracy (percentages) after one FGSM step of ``epsilon``, beside the clean accuracy."""

    epsilon: float
    top1_acc: float | None
    clean_top1_acc: float | None


@dataclass(frozen=True)
class ModelRobustness:
    """One model's report: what it is, how its classes were matched, and each measure that was run (None: not run)."""

    model: str | None
    input_size: list[int]
    label_mapping: str
    clean: CleanResult
    forward_batches: int
    occlusion: OcclusionResult | None = None
    in_between: InBetweenResult | None = None
    fgsm: FgsmResult | None = None
    ood: dict[str, OodMetrics] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The model's part of ``report.json``: the measures that were run, as plain JSON values."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class RobustnessSettings:
    """What the evaluation ran with."""

    measures: list[str]
    seed: int
    batch_size: int
    occlusion_fill: str
    hole_steps: int
    ratios: list[float]
    epsilon: float
    ood: list[str]
    noise_images: int
    ood_images: int


@dataclass(frozen=True)
class RobustnessReport:
    """The robustness report of every model on the same images."""

    images: int
    classes: list[str]
    decoded_images: int
    settings: RobustnessSettings
    models: dict[str, ModelRobustness]

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON values, as ``report.json`` holds it."""
        return {"images": self.images, "classes": self.classes, "decoded_images": self.decoded_images,
                "settings": dataclasses.asdict(self.settings), "models": {name: m.to_dict() for name, m in self.models.items()}}


def _pct(count: int, total: int) -> float | None:
    return 100 * count / total if total else None


def _pcts(counts: Sequence[int], total: int) -> list[float | None]:
    return [_pct(c, total) for c in counts]


# --- the evaluation --------------------------------------------------------------------------------------------

class _Model:
    """One model's settings and running counts."""

    def __init__(self, name: str, net: nn.Module, classes: Sequence[str], sizes_steps: int, ratios: Sequence[float]) -> None:
        self.name, self.net = name, net
        self.cfg = pretrained_cfg_of(net)
        self.to_model, self.mapping = label_map(net, classes)
        self.transform = transforms(net)
        self.key = repr(self.transform)
        param = next(net.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.mean = torch.tensor(self.cfg["mean"], device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(self.cfg["std"], device=self.device).view(1, 3, 1, 1)
        height, width = self.cfg["input_size"][-2:]
        self.size = (height, width)
        self.sizes = hole_sizes(max(height, width), sizes_steps)
        self.masks = {kind: occlusion_masks(height, width, self.sizes, kind, self.device) for kind in ("centre", "boundary")}
        self.ratios = list(ratios)
        self.images = 0
        self.clean_miss = 0
        self.occluded_miss = {kind: [0] * len(self.sizes) for kind in ("centre", "boundary")}
        self.mixed = 0
        self.neither = {kind: [0] * len(self.ratios) for kind in ("mixup", "cutmix")}
        self.neither2 = {kind: [0] * len(self.ratios) for kind in ("mixup", "cutmix")}
        self.fgsm_hits = 0
        self.scores: list[torch.Tensor] = []
        self.ood_scores: dict[str, list[torch.Tensor]] = {}
        self.forward_batches = 0

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.forward_batches += 1
        return self.net(x.to(self.dtype)).float()

    def result(self, measures: Sequence[str], epsilon: float) -> ModelRobustness:
        """The model's report from its counts: the measures of ``measures``."""
        n, mixed = self.images, self.mixed
        clean = CleanResult(_pct(self.clean_miss, n), _pct(n - self.clean_miss, n), n)
        occlusion = in_between = fgsm = ood = None
        if "occlusion" in measures:
            occlusion = OcclusionResult(self.sizes, _pcts(self.occluded_miss["centre"], n), _pcts(self.occluded_miss["boundary"], n))
        if "in_between" in measures:
            in_between = InBetweenResult(self.ratios, mixed, IN_BETWEEN_DEFINITION, _pcts(self.neither["mixup"], mixed),
                                         _pcts(self.neither["cutmix"], mixed), _pcts(self.neither2["mixup"], mixed),
                                         _pcts(self.neither2["cutmix"], mixed))
        if "fgsm" in measures:
            fgsm = FgsmResult(epsilon, _pct(self.fgsm_hits, n), clean.top1_acc)
        if "ood" in measures:
            inside = torch.cat(self.scores)
            ood = {kind: ood_metrics(inside, torch.cat(scores)).rounded() for kind, scores in self.ood_scores.items() if scores}
        return ModelRobustness(self.cfg.get("name"), list(self.size), self.mapping, clean, self.forward_batches,
                               occlusion, in_between, fgsm, ood)


def _counts_neither(logits: torch.Tensor, ya: torch.Tensor, yb: torch.Tensor) -> tuple[int, int]:
    top2 = logits.topk(min(2, logits.shape[1]), dim=1).indices
    top1 = top2[:, 0]
    neither = (top1 != ya) & (top1 != yb)
    neither2 = ~((top2 == ya[:, None]) | (top2 == yb[:, None])).any(dim=1)
    return int(neither.sum()), int(neither2.sum())


def _run_batch(m: _Model, x: torch.Tensor, y: torch.Tensor, measures: Sequence[str], pair: list[int] | None,
               places: list[torch.Tensor], epsilon: float) -> None:
    x, y = x.to(m.device), m.to_model[y].to(m.device)
    with torch.no_grad():
        clean = m.logits(x)
        m.images += len(x)
        clean_miss = int((clean.argmax(1) != y).sum())
        m.clean_miss += clean_miss
        m.scores.append(clean.softmax(1).amax(1).cpu())
        if "occlusion" in measures:
            last = len(m.sizes) - 1
            for kind, masks in m.masks.items():
                for k in range(len(m.sizes)):
                    if (kind == "centre" and k == 0) or (kind == "boundary" and k == last):
                        m.occluded_miss[kind][k] += clean_miss  # nothing is occluded: the clean images
                    else:
                        m.occluded_miss[kind][k] += int((m.logits(x * masks[k]).argmax(1) != y).sum())
        if "in_between" in measures and pair is not None:
            index = torch.tensor(pair, device=x.device)
            xb, yb = x[index], y[index]
            m.mixed += len(x)
            for r, lam in enumerate(m.ratios):
                n1, n2 = _counts_neither(m.logits(lam * x + (1 - lam) * xb), y, yb)
                m.neither["mixup"][r] += n1
                m.neither2["mixup"][r] += n2
                patch = cutmix_masks(*m.size, lam, places[r].to(x.device))
                n1, n2 = _counts_neither(m.logits(x * (1 - patch) + xb * patch), y, yb)
                m.neither["cutmix"][r] += n1
                m.neither2["cutmix"][r] += n2
    if "fgsm" in measures:
        with torch.enable_grad():
            x_grad = x.detach().clone().requires_grad_(True)
            loss = F.cross_entropy(m.logits(x_grad), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x_grad)
        with torch.no_grad():
            pixels = (x * m.std + m.mean + epsilon * grad.sign()).clamp(0, 1)
            m.fgsm_hits += int((m.logits((pixels - m.mean) / m.std).argmax(1) == y).sum())


def _scores(m: _Model, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return m.logits(x.to(m.device)).softmax(1).amax(1).cpu()


def _decode(runs: Sequence[_Model], images: Sequence[ImageLike]) -> dict[str, torch.Tensor]:
    """The batch of ``images`` through each distinct eval transform of ``runs``, every image decoded once."""
    pils = [open_image(image) for image in images]
    transforms_by_key = {m.key: m.transform for m in runs}
    return {key: torch.stack([t(p) for p in pils]) for key, t in transforms_by_key.items()}


def _measure_images(runs: Sequence[_Model], images: Sequence[ImageLike], labels: Sequence[int], measures: Sequence[str],
                    ratios: int, epsilon: float, batch_size: int, seed: int, progress: Callable[[Iterable], Iterable]) -> int:
    """Every measure but out-of-distribution detection, on the images in a seeded random order (the same seed draws the
    CutMix patches' places); returns how many images were decoded."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(images), generator=g).tolist()
    labels_t = torch.as_tensor(list(labels), dtype=torch.long)
    for start in progress(range(0, len(order), batch_size)):
        index = order[start:start + batch_size]
        inputs = _decode(runs, [images[i] for i in index])
        y = labels_t[index]
        pair = partners(y.tolist()) if len(index) > 1 else None
        places = [torch.rand(len(index), 2, generator=g) for _ in range(ratios)]
        for m in runs:
            _run_batch(m, inputs[m.key], y, measures, pair, places, epsilon)
    return len(order)


def _measure_ood(runs: Sequence[_Model], ood_images: Sequence[ImageLike], noise_count: int, batch_size: int, seed: int,
                 progress: Callable[[Iterable], Iterable]) -> int:
    """The maximum softmax scores of the generated noise and of ``ood_images``; returns how many images were decoded."""
    for m in runs:
        for kind in NOISE_KINDS:
            m.ood_scores[kind] = [_scores(m, (x.to(m.device) - m.mean) / m.std)
                                  for x in noise_images(kind, noise_count, m.size, seed, batch_size)]
    for start in progress(range(0, len(ood_images), batch_size)):
        inputs = _decode(runs, ood_images[start:start + batch_size])
        for m in runs:
            m.ood_scores.setdefault("folder", []).append(_scores(m, inputs[m.key]))
    return len(ood_images)


def _check_arguments(measures: Sequence[str], epsilon: float, images: Sequence[ImageLike], labels: Sequence[int],
                     batch_size: int) -> None:
    unknown = [m for m in measures if m not in MEASURES]
    if not measures:
        raise InvalidArgumentError(f"No measure was asked for: choose one or more of {', '.join(MEASURES)}.")
    if unknown:
        raise InvalidArgumentError(f"Unknown measure {unknown[0]!r}: choose from {', '.join(MEASURES)}.")
    if not 0 <= epsilon <= 1:
        raise InvalidArgumentError(f"FGSM's epsilon is a step in pixel values from 0 to 1 (8/255 in the paper), not {epsilon!r}.")
    if len(images) != len(labels) or not len(images):
        raise InvalidArgumentError(f"Give one label per image and at least one image ({len(images)} images, {len(labels)} labels).")
    if len(set(labels)) < 2:
        raise InvalidArgumentError("The images hold fewer than two classes; robustness needs at least two (in-between class samples mix two).")
    if not isinstance(batch_size, int) or batch_size < 2:
        raise InvalidArgumentError(f"The batch size must be an integer of at least 2, not {batch_size!r}.")


def evaluate(
    models: Mapping[str, nn.Module] | Sequence[str],
    images: Sequence[ImageLike],
    labels: Sequence[int],
    classes: Sequence[str],
    measures: Sequence[str] = MEASURES,
    hole_steps: int = DEFAULT_HOLE_STEPS,
    ratios: int = DEFAULT_RATIOS,
    epsilon: float = DEFAULT_EPSILON,
    ood_images: Sequence[ImageLike] = (),
    noise_count: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> RobustnessReport:
    """The robustness report of each model on ``images`` (paths or PIL images) with ``labels`` indexing ``classes``.

    ``models`` maps a report name to a module made by ``cutmix_zoo.load``, or is a list of model names.
    Each model's classes are matched to ``classes`` by :func:`label_map`. Images are read in a seeded
    random order (so batches mix classes; in-between pairs are formed inside a batch), each decoded
    once. ``noise_count`` generated images of each noise kind are scored (default: as many as images,
    at most 10,000). See the module's docstring for the measures and the report's fields.
    """
    _check_arguments(measures, epsilon, images, labels, batch_size)
    if not isinstance(models, Mapping):
        models = {name: resolve_model(name, device=device) for name in models}
    runs = [_Model(name, resolve_model(net, device=device), classes, hole_steps, mixing_ratios(ratios)) for name, net in models.items()]
    progress = progress or (lambda batches: batches)
    ood = "ood" in measures
    noise_count = (noise_count if noise_count is not None else min(len(images), 10_000)) if ood else 0
    with eval_mode(*(m.net for m in runs)):
        decoded = _measure_images(runs, images, labels, measures, ratios, epsilon, batch_size, seed, progress)
        if ood:
            decoded += _measure_ood(runs, ood_images, noise_count, batch_size, seed, progress)
    settings = RobustnessSettings(list(measures), seed, batch_size, OCCLUSION_FILL, hole_steps, mixing_ratios(ratios), epsilon,
                                  [*NOISE_KINDS, *(["folder"] if len(ood_images) else [])] if ood else [], noise_count,
                                  len(ood_images) if ood else 0)
    return RobustnessReport(len(images), list(classes), decoded, settings, {m.name: m.result(measures, epsilon) for m in runs})


def summary_rows(report: RobustnessReport) -> tuple[list[str], list[list[str]]]:
    """The report's one-number-per-measure table: header and one row per model."""
    header = ["model", "top-1 err %", "centre occl. err % (mean)", "boundary occl. err % (mean)",
              "Mixup in-between err % (mean)", "CutMix in-between err % (mean)", "FGSM acc %"]
    kinds = [k for k in (*NOISE_KINDS, "folder") if any(k in (r.ood or {}) for r in report.models.values())]
    for kind in kinds:
        header += [f"{kind} TNR@95", f"{kind} AUROC", f"{kind} det. acc"]

    def mean(values: Sequence[float | None] | None) -> str:
        kept = [v for v in values or [] if v is not None]
        return f"{sum(kept) / len(kept):.2f}" if kept else "-"

    rows = []
    for name, r in report.models.items():
        occ, mix = r.occlusion, r.in_between
        row = [name, f"{r.clean.top1_err:.2f}", mean(occ.centre_top1_err if occ else None), mean(occ.boundary_top1_err if occ else None),
               mean(mix.mixup_err if mix else None), mean(mix.cutmix_err if mix else None), f"{r.fgsm.top1_acc:.2f}" if r.fgsm else "-"]
        for kind in kinds:
            o = (r.ood or {}).get(kind)
            row += [f"{o.tnr_at_95_tpr:.3f}", f"{o.auroc:.3f}", f"{o.detection_acc:.3f}"] if o else ["-", "-", "-"]
        rows.append(row)
    return header, rows
