"""What a build is configured by: :class:`BuildConfig` (importable without the model code)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from recommender.errors import ConfigError
from recommender.fit.als import ALSParams
from recommender.query.scoring import DEFAULT_METHOD, get_method
from recommender.vision.backbones import DEFAULT_BACKBONE

# Accepted ranges (inclusive) of BuildConfig's numbers; the CLI's options check the same.
THUMB_SIZE_RANGE = (16, 1024)
BATCH_SIZE_RANGE = (1, 4096)
WORKERS_RANGE = (1, 64)


@dataclass(frozen=True)
class BuildConfig:
    """Everything that decides what ``build`` makes; defaults are the documented defaults."""

    # metadata: the CLI's option for the field (recommender/cli.py: help, accepted range)
    backbone: str = field(
        default=DEFAULT_BACKBONE, metadata={"help": "the network that turns photos into vectors"}
    )
    weights: str | None = field(
        default="default",
        metadata={"help": "'default' (pretrained ImageNet) or a Keras weights file"},
    )
    als: ALSParams = field(default_factory=ALSParams)  # its fields are options of their own
    method: str = field(
        default=DEFAULT_METHOD, metadata={"help": "default scoring method stored in the model"}
    )
    thumb_size: int = field(
        default=128, metadata={"help": "thumbnail side in pixels", "range": THUMB_SIZE_RANGE}
    )
    batch_size: int = field(
        default=32, metadata={"help": "images per network batch", "range": BATCH_SIZE_RANGE}
    )
    workers: int = field(
        default=2, metadata={"help": "image decoding threads", "range": WORKERS_RANGE}
    )

    def __post_init__(self) -> None:
        for name, (lo, hi) in (
            ("thumb_size", THUMB_SIZE_RANGE),
            ("batch_size", BATCH_SIZE_RANGE),
            ("workers", WORKERS_RANGE),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
                raise ConfigError(f"{name} must be a whole number from {lo} to {hi}, not {value!r}")
        if not isinstance(self.als, ALSParams):
            raise ConfigError(f"als must be an ALSParams, not {type(self.als).__name__}")
        get_method(self.method)  # an unknown name raises ConfigError

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["als"] = self.als.to_dict()
        out["method"] = get_method(self.method).to_dict()
        return out
