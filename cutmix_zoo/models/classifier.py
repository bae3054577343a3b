"""timm's classifier interface, shared by every family: ``forward_features``, ``forward_head``,
``get_classifier``, ``reset_classifier`` and the ``num_classes`` / ``num_features`` attributes.

A family's class lists this mixin before its ``nn.Module`` base and defines ``forward_features``
(input to the last feature map, before pooling); ``forward`` is then exactly
``forward_head(forward_features(x))``. The head is the family's ``avgpool`` (adaptive, to 1x1),
``flatten`` and ``fc`` children; a family whose flatten is not a child overrides ``forward_head``.
Everything here is plain attribute access: it adds nothing to building a model, and TorchScript
and ``torch.fx`` see an explicit sequence of calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import InvalidArgumentError

# The pretrained_cfg values that describe a measured head; a new head makes them untrue (ModelConfig.unmeasured).
MEASURED_KEYS = ("top1_err", "top5_err", "err_source", "eval_dataset")


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

    The two ints are set by each family's constructor; the mixin declares no class annotations,
    which TorchScript would read as the module's attribute types.
    """

    if TYPE_CHECKING:  # what the family's nn.Module provides, for the type checker only (never executed)
        avgpool: nn.Module
        flatten: nn.Module
        fc: nn.Module
        num_features: int
        num_classes: int
        training: bool

        def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...

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
