"""What every network family provides, declared once.

A family is one file in ``fer_lightning/nets/`` holding one class that derives from
:class:`FERNet`, plus one yaml in ``conf/model/``. ``config.check_config`` reads the
class attributes before anything is built, ``FERClassifier`` hands ``forward`` exactly the
batch keys of ``input_keys``, and ``finetune.StagedFineTuning`` drives the optional
:class:`StagedFineTunable` hooks.

The constructor of every family takes
``(num_classes, in_channels, image_size, head, use_landmarks, **options)``: ``head`` is a
plain mapping of ``ClassifierHead`` keyword arguments (``pool``, ``hidden``, ...) and each
option is one ``model.<key>`` of the family's yaml, as plain Python values (no omegaconf
objects). Nets never read the data layer: what they need from it (the number of region
boxes, the input normalisation) comes in as constructor arguments.
"""

from __future__ import annotations

from typing import ClassVar, Protocol, runtime_checkable

from torch import nn

from fer_lightning.nets.heads import POOLS


class FERNet(nn.Module):
    """Base class of every network family: ``forward(**batch_keys) -> logits (B, K)``.

    Class attributes a family sets (read by the config checks before the net is built):

    - ``input_keys``: the batch keys ``forward`` takes, by keyword (a family whose inputs
      depend on its options, like ``mba`` with landmarks on or off, overrides it with a
      property);
    - ``landmark_encoding``: the encoding the family consumes when landmarks are on
      (``overlay``, ``heatmap``, ``regions`` or ``coords``, see ``data/encodings.py``),
      or None when it cannot use landmarks (``landmarks=`` other than ``none`` is then a
      config error);
    - ``supported_heads``: the ``head.pool`` values it honours (``gap``, ``flatten``).

    And one instance attribute, read by the ONNX export:

    - ``per_image_graph``: True when ``forward`` loops over the images of a batch in
      Python (``ms_fpn``'s region detector), so a traced graph is only valid for the
      traced batch size and is exported with a batch of 1.
    """

    input_keys: tuple[str, ...] = ("image",)
    landmark_encoding: ClassVar[str | None] = None
    supported_heads: ClassVar[tuple[str, ...]] = POOLS
    per_image_graph: bool = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        unknown = [pool for pool in cls.supported_heads if pool not in POOLS]
        if unknown or not cls.supported_heads:
            raise TypeError(f"{cls.__name__}.supported_heads must be a non-empty subset of "
                            f"{list(POOLS)}, got {list(cls.supported_heads)}")


@runtime_checkable
class StagedFineTunable(Protocol):
    """The hooks of ``callbacks=staged_finetune`` (VGG16-CBAM, Ghimire et al.,
    Methodology): what to freeze first and which layers to unfreeze, last first."""

    def finetune_base(self) -> nn.Module:
        """The pre-trained part, frozen in stage 0."""
        ...

    def finetune_layers(self) -> list[nn.Module]:
        """The base's layers in forward order; stage k unfreezes the last k."""
        ...
