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

    backbone: str = DEFAULT_BACKBONE
    weights: str | None = "default"
    als: ALSParams = field(default_factory=ALSParams)
    method: str = DEFAULT_METHOD
    thumb_size: int = 128
    batch_size: int = 32
    workers: int = 2

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
