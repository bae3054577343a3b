"""timm's model interface, shared by every family: ``forward_features``, ``forward_head``,
``get_classifier``, ``reset_classifier``, the ``num_classes`` / ``num_features`` attributes, and the rest of what timm's
training script and optimisers use: ``forward_intermediates`` and ``prune_intermediate_layers``,
``set_grad_checkpointing``, ``group_matcher`` (layer-wise learning-rate decay), ``feature_info`` and ``default_cfg``.

A family's class lists this mixin before its ``nn.Module`` base and defines ``forward_features``
(input to the last feature map, before pooling); ``forward`` is then exactly
``forward_head(forward_features(x))``. The head is the family's ``avgpool`` (adaptive, to 1x1),
``flatten`` and ``fc`` children; a family whose flatten is not a child overrides ``forward_head``.
The intermediates and the parameter groups follow the family's ``feature_points`` (the top-level child after which
each level is taken) and the network's top-level children, which every family runs in registration order.
Everything here is plain attribute access: it adds nothing to building a model, and TorchScript
and ``torch.fx`` see an explicit sequence of calls (gradient checkpointing, off by default, is left out of a script).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
import torch.utils.checkpoint
from torch import nn

from ..errors import InvalidArgumentError
from ..features import feature_take_indices

# The pretrained_cfg values that describe a measured head; a new head makes them untrue (ModelConfig.unmeasured).
MEASURED_KEYS = ("top1_err", "top5_err", "err_source", "eval_dataset")
HEAD_CHILDREN = ("avgpool", "flatten", "fc")  # the top-level children after the last feature map
FINAL_GROUP = (99999,)  # timm's group ordinal for what follows the last block (a final norm): the last group before the head


def base_model_of(cfg: dict[str, Any]) -> str | None:
    """What a model fine-tuned from the weights of ``cfg`` (a ``pretrained_cfg``) names as its ``base_model``: their
    Hub repository, else their name."""
    return cfg.get("hub_repo") or cfg.get("name")


def init_like_the_original(model: nn.Module) -> None:
    """The CutMix repository's initialisation of its CIFAR ResNets and PyramidNets: He-normal (fan out) convolutions,
    batch-norm weight 1 and bias 0. Skipped, like every initialiser, when a model is built on the meta device for loading."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


class ClassifierMixin:
    """timm's classifier methods for a module with ``avgpool``, ``fc``, ``num_features`` and ``num_classes``.

    The two ints and ``grad_checkpointing`` (False) are set by each family's constructor, which also defines
    ``feature_points``; the mixin declares no class annotations, which TorchScript would read as the module's attribute
    types, and its two properties are left out of a script.
    """

    __jit_unused_properties__ = ["feature_info", "default_cfg"]

    if TYPE_CHECKING:  # what the family's nn.Module provides, for the type checker only (never executed)
        avgpool: nn.Module
        flatten: nn.Module
        fc: nn.Module
        num_features: int
        num_classes: int
        training: bool
        grad_checkpointing: bool

        def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

        def named_children(self) -> Iterator[tuple[str, nn.Module]]: ...

        def feature_points(self) -> list[tuple[str, int, int]]: ...

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - every family overrides it
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool the last feature map; ``pre_logits=True`` returns the pooled ``num_features``-d vector, else the logits."""
        x = self.flatten(self.avgpool(x))
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        """The classifier (``fc``): an ``nn.Linear``, or ``nn.Identity`` when ``num_classes`` is 0."""
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None, *,
                         device: Any = None, dtype: torch.dtype | None = None) -> None:
        """Replace the classifier with a freshly initialised ``num_classes``-way one (0: ``nn.Identity``, pooled features).

        As timm's: ``global_pool`` may be None or ``"avg"`` (the only pooling these networks have); the
        new head is made on the model's device and in its dtype unless ``device``/``dtype`` say otherwise.
        A ``pretrained_cfg`` gets the new ``num_classes``, loses the measured errors, which described the
        old head, and (for pretrained weights) names the ``base_model`` a fine-tuned export comes from.
        """
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise InvalidArgumentError(f"num_classes must be a non-negative integer (0 for pooled embeddings), not {num_classes!r}.")
        if global_pool not in (None, "avg"):
            raise InvalidArgumentError(f"global_pool {global_pool!r} is not available: these networks pool by averaging (\"avg\").")
        reference = self.fc.weight if isinstance(self.fc, nn.Linear) else next(self.parameters(), None)
        if reference is not None:
            device = reference.device if device is None else device
            dtype = reference.dtype if dtype is None else dtype
        head = nn.Identity() if num_classes == 0 else nn.Linear(self.num_features, num_classes, device=device, dtype=dtype)
        self.fc = head.train(self.training)
        self.num_classes = num_classes
        cfg = getattr(self, "pretrained_cfg", None)
        if isinstance(cfg, dict):
            headed = {**cfg, "num_classes": num_classes, **dict.fromkeys(MEASURED_KEYS)}
            headed.pop("label_names", None)  # the old head's class names
            if cfg.get("source") and num_classes and not cfg.get("base_model"):
                # a new head on pretrained weights: what it is fine-tuned from, for the export's card (the Hub's base_model)
                headed["base_model"] = base_model_of(cfg)
            self.pretrained_cfg = headed

    @property
    def feature_info(self) -> list[dict[str, Any]]:
        """timm's ``feature_info`` of a classifier: one dict per feature level (``num_chs``, ``reduction``, ``module``,
        the top-level child the level follows), the levels ``forward_intermediates`` indexes."""
        return [{"num_chs": c, "reduction": r, "module": m} for m, c, r in self.levels()]

    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm's older name for ``pretrained_cfg`` (an empty dict for a model built without one)."""
        return dict(getattr(self, "pretrained_cfg", None) or {})

    def levels(self) -> list[tuple[str, int, int]]:
        """(child, channels, reduction) of each feature level: the family's ``feature_points``, or the levels
        :meth:`prune_intermediate_layers` kept."""
        return list(self.__dict__.get("kept_levels") or self.feature_points())

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of keeping them (timm's memory saver); the
        outputs and gradients are those of the plain forward."""
        self.grad_checkpointing = bool(enable)

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """timm's parameter groups by name: the stem, then each block (``coarse``: each stage), then what follows the
        last stage before the head; the head falls in the last group. ``timm.optim.create_optimizer_v2(model,
        layer_decay=...)`` scales each group's learning rate by its depth with these, as for timm's ResNets."""
        names = [name for name, _ in self.named_children()]
        stages = [i for i, name in enumerate(names) if name.startswith("layer")]
        stem = "|".join(names[:stages[0]])
        tail = "|".join(n for n in names[stages[-1] + 1:] if n not in HEAD_CHILDREN)
        blocks: list[tuple[str, tuple[int, ...] | None]] = [(r"^layer(\d+)" if coarse else r"^layer(\d+)\.(\d+)", None)]
        if tail:
            blocks.append((rf"^(?:{tail})\.", FINAL_GROUP))
        return {"stem": rf"^(?:{stem})\.", "blocks": blocks}

    def forward_intermediates(self, x: torch.Tensor, indices: int | list[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW",
                              intermediates_only: bool = False) -> Any:
        """timm's multi-scale forward: the feature maps of the levels ``indices`` picks (None: all; ``n``: the last
        ``n``; a list: those, negatives from the end), in forward order, with the last feature map unless
        ``intermediates_only``. ``stop_early`` ends the forward before the stage after the last level taken. ``norm`` changes nothing, as
        on timm's ResNets: no level here lacks a normalisation the network applies. Maps are NCHW, the one format."""
        if output_fmt != "NCHW":
            raise InvalidArgumentError(f"output_fmt {output_fmt!r} is not available: these networks give NCHW maps.")
        levels = self.levels()
        taken, last = feature_take_indices(len(levels), indices)
        taps = {levels[i][0] for i in taken}
        intermediates, done = [], False
        for name, module in self.body():
            if done and isinstance(module, nn.Sequential):  # the next stage: timm's stop (a stem's pooling still runs)
                break
            x = self.run_child(module, x)
            if name in taps:
                intermediates.append(x)
            done = done or (stop_early and name == levels[last][0])
        return intermediates if intermediates_only else (x, intermediates)

    def prune_intermediate_layers(self, indices: int | list[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop what the levels ``indices`` picks do not need, as timm does: every child after the last level taken
        (a stage becomes an empty ``nn.Sequential``, anything else ``nn.Identity``), and the head where ``prune_head``
        or where the features now end earlier (``num_features`` then is that level's width). Returns the levels taken;
        ``feature_info`` then lists the levels kept."""
        levels = self.levels()
        taken, last = feature_take_indices(len(levels), indices)
        names = [name for name, _ in self.body()]
        for name in names[names.index(levels[last][0]) + 1:]:
            setattr(self, name, nn.Sequential() if isinstance(getattr(self, name), nn.Sequential) else nn.Identity())
        self.kept_levels = levels[:last + 1]
        if last < len(levels) - 1:
            self.num_features = levels[last][1]
        if prune_head or last < len(levels) - 1:
            self.reset_classifier(0)
        return taken

    def body(self) -> list[tuple[str, nn.Module]]:
        """The top-level children before the head, in the order the forward runs them."""
        return [(name, module) for name, module in self.named_children() if name not in HEAD_CHILDREN]

    def run_child(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``module(x)``; with gradient checkpointing on, each block of a stage is checkpointed (as timm's
        ``checkpoint_seq``)."""
        if not (self.grad_checkpointing and isinstance(module, nn.Sequential)):
            return module(x)
        for block in module:
            x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
        return x

    @torch.jit.unused
    def checkpointed_features(self, x: torch.Tensor) -> torch.Tensor:
        """``forward_features`` with gradient checkpointing on: the body's children, stages block by block."""
        for _, module in self.body():
            x = self.run_child(module, x)
        return x
