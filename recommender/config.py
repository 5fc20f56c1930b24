"""What a build and a query are configured by: :class:`BuildConfig`, the ALS fit's
:class:`ALSParams` and the scoring :class:`Method` registry, with their defaults.

Plain dataclasses that check their own values; a base layer that imports none of the model
code (the stages import their parameters from here). A method is named by its registry key,
optionally with changed fields after a colon:
``profiles_prior:calibrated_hedge=0.3,prior_weight=0.5`` (for comparing variants).
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any, get_type_hints

from recommender.errors import ConfigError

DEFAULT_BACKBONE = "efficientnet_lite0"
WEIGHTINGS = ("none", "bm25")  # of the post x hashtag matrix before ALS
NEIGHBOUR_WEIGHTINGS = ("uniform", "similarity")


@dataclass(frozen=True)
class ALSParams:
    """Parameters of the ALS fit.

    ``alpha`` follows ``implicit``: the confidence of an observed pair is ``alpha * value``
    (Spark, which the original project used, takes ``1 + alpha * value``); how the
    default was chosen is in benchmarks/README.md.
    """

    # metadata: the CLI's option for the field (recommender/cli.py: help, accepted range)
    factors: int = field(default=64, metadata={"help": "ALS latent factors", "range": (1, 1024)})
    iterations: int = field(default=20, metadata={"help": "ALS iterations", "range": (1, 1000)})
    regularization: float = field(
        default=0.05, metadata={"help": "ALS L2 regularisation", "range": (0.0, None)}
    )
    alpha: float = field(
        default=5.0,
        metadata={
            "help": "ALS confidence scale (implicit: alpha*value; Spark: 1+alpha*value)",
            "range": (0.0, None),
            "open_lo": True,
        },
    )
    weighting: str = field(
        default="bm25",
        metadata={
            "help": "weighting of the post x hashtag matrix before ALS",
            "choices": WEIGHTINGS,
        },
    )
    min_support: int = field(
        default=1, metadata={"help": "drop hashtags used by fewer posts", "range": (1, None)}
    )
    random_state: int = field(
        default=42, metadata={"help": "the ALS seed", "flag": "--seed", "range": (0, 2**32 - 1)}
    )

    def __post_init__(self) -> None:
        if self.factors < 1 or self.iterations < 1:
            raise ConfigError("ALS needs factors >= 1 and iterations >= 1")
        if not (math.isfinite(self.regularization) and math.isfinite(self.alpha)):
            raise ConfigError("ALS regularization and alpha must be finite numbers")
        if self.regularization < 0 or self.alpha <= 0:
            raise ConfigError("ALS needs regularization >= 0 and alpha > 0")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {WEIGHTINGS}, not {self.weighting!r}")
        if self.min_support < 1:
            raise ConfigError("min_support must be >= 1")
        if self.random_state < 0:
            raise ConfigError("random_state (the seed) must be >= 0")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Method:
    """How neighbour hashtags become scores.

    Attributes
    ----------
    als_weight : float
        1.0 scores with ALS factors only, 0.0 with neighbour votes only, between: a blend.
    weighting : str
        ``"uniform"``: every neighbour counts the same; ``"similarity"``: in proportion to
        ``max(similarity, 0) ** power``.
    power : float
        Sharpness of the similarity weighting.
    profiles : bool
        Single-hashtag neighbours vote with their hashtag's profile
        (:mod:`recommender.query.scoring`).
    prior_weight : float
        Weight of the image->hashtag ridge prior added to the neighbours' score (0: none).
    content_weight : float
        Weight of what the ImageNet head sees (:mod:`recommender.query.scoring`; 0: nothing).
    calibrated_hedge : float or None
        Hedging: remove another category's search tags when the model's calibration
        (:class:`recommender.query.hedging.CategoryHedge`) gives a post that looks like the
        query less
        than this probability of carrying one of its forms (None: off).
    calibrated_single : float
        With ``calibrated_hedge``: the threshold for a category whose photos carry only
        their search tag (removing one of those can cost a photo of it its own tag).
    calibrated_demote : float or None
        Demotion: move another category's search tags below the top 5 (not out of the
        ranking) when the calibration gives a post like the query less than this
        probability of carrying one of its forms (None: off).
    calibrated_demote_single : float
        With ``calibrated_demote``: the threshold for a single-tag category.
    """

    name: str
    als_weight: float
    weighting: str = "similarity"
    power: float = 1.0
    profiles: bool = False
    prior_weight: float = 0.0
    content_weight: float = 0.0
    calibrated_hedge: float | None = None
    calibrated_single: float = 0.06
    calibrated_demote: float | None = None
    calibrated_demote_single: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.als_weight <= 1.0:
            raise ConfigError("als_weight must lie in [0, 1]")
        if self.weighting not in NEIGHBOUR_WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {NEIGHBOUR_WEIGHTINGS}")
        if not self.power >= 0:  # also refuses NaN
            raise ConfigError("power must be >= 0")
        if not self.prior_weight >= 0:
            raise ConfigError("prior_weight must be >= 0")
        if not self.content_weight >= 0:
            raise ConfigError("content_weight must be >= 0")
        if self.calibrated_hedge is not None and not 0.0 <= self.calibrated_hedge <= 1.0:
            raise ConfigError("calibrated_hedge must lie in [0, 1] (or none)")
        if not 0.0 <= self.calibrated_single <= 1.0:
            raise ConfigError("calibrated_single must lie in [0, 1]")
        if self.calibrated_demote is not None and not 0.0 <= self.calibrated_demote <= 1.0:
            raise ConfigError("calibrated_demote must lie in [0, 1] (or none)")
        if not 0.0 <= self.calibrated_demote_single <= 1.0:
            raise ConfigError("calibrated_demote_single must lie in [0, 1]")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: Any) -> Method:
        """The method :meth:`to_dict` wrote, with the numbers it saved (not today's
        :data:`METHODS` under that name, which may have been retuned since).

        Fields a newer version added and ``saved`` lacks take their defaults (the method
        was saved before they existed). A retired hedging rule (:data:`RETIRED_RULES`) that
        ``saved`` names is ignored when it is off and refused when it is on. Raises
        :class:`~recommender.errors.ConfigError` for anything that does not describe a
        valid method.
        """
        if not isinstance(saved, dict):
            raise ConfigError(f"a saved method is a JSON object, not {type(saved).__name__}")
        for rule, companion in RETIRED_RULES.items():
            if saved.get(rule) is not None:
                raise ConfigError(
                    f"the saved method hedges with {rule}={saved[rule]!r}, a rule this version "
                    "no longer has; rebuild the model"
                )
            saved = {k: v for k, v in saved.items() if k not in (rule, companion)}
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(saved) - set(known))
        if unknown:
            raise ConfigError(
                f"the saved method has fields this version does not know: {', '.join(unknown)}"
            )
        missing = [n for n, f in known.items() if f.default is MISSING and n not in saved]
        if missing:
            raise ConfigError(f"the saved method lacks {', '.join(missing)}")
        types = get_type_hints(cls)
        values: dict[str, Any] = {}
        for name, value in saved.items():
            kind = types[name]
            if kind == float | None:  # optional numbers (calibrated_hedge)
                if value is None:
                    values[name] = value
                    continue
                kind = float
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise ConfigError(f"the saved method's {name} is {value!r}, not a {kind.__name__}")
            values[name] = value
        return cls(**values)


# Hedging rules earlier versions had (by margin, by the ImageNet head, by fixed evidence
# thresholds), each with the option that only qualified it; no shipped method used them
# (benchmarks/hedging_rules.py measures them). Models saved them switched off.
RETIRED_RULES = {
    "category_margin": None,
    "head_hedge": "head_hedge_unnamed",
    "evidence_hedge": "evidence_agreement",
}


METHODS: dict[str, Method] = {
    # The original project: plain mean of the neighbours' ALS post factors.
    "original": Method("original", als_weight=1.0, weighting="uniform"),
    "als_weighted": Method("als_weighted", als_weight=1.0, weighting="similarity"),
    "knn_vote": Method("knn_vote", als_weight=0.0, weighting="similarity"),
    "blend": Method("blend", als_weight=0.5, weighting="similarity"),
    "vote_profiles": Method("vote_profiles", als_weight=0.0, profiles=True),
    "blend_profiles": Method("blend_profiles", als_weight=0.3, profiles=True),
    # The default: its numbers were chosen by paired comparisons over 20 splits
    # (benchmarks/README.md, "More neighbours, sharper weights", "Calibrated hedging by
    # the photos a category's posts are like" and "Demotion: uncertain search tags below
    # the top 5").
    "profiles_prior": Method(
        "profiles_prior",
        als_weight=0.5,
        power=5.0,
        profiles=True,
        prior_weight=1.0,
        content_weight=0.4,
        calibrated_hedge=0.325,
        calibrated_single=0.105,
        calibrated_demote=0.4,
        calibrated_demote_single=0.3,
    ),
}
DEFAULT_METHOD = "profiles_prior"


def get_method(method: str | Method) -> Method:
    """Look a method up by name (or pass a :class:`Method` through).

    ``name:field=value,...`` is the registered method ``name`` with those fields changed
    (``none`` for no value); the variant is named by the whole string.
    """
    if isinstance(method, Method):
        return method
    if not isinstance(method, str) or method.partition(":")[0] not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(sorted(METHODS))}")
    name, _, options = method.partition(":")
    base = METHODS[name]
    if not options:
        return base
    changes: dict[str, Any] = {}
    names = {f.name for f in fields(Method)} - {"name"}
    for item in options.split(","):
        key, eq, value = (part.strip() for part in item.partition("="))
        if key in RETIRED_RULES or key in RETIRED_RULES.values():
            raise ConfigError(
                f"{key} in {method!r} was a hedging rule this version no longer has; "
                "use calibrated_hedge"
            )
        if not eq or key not in names:
            raise ConfigError(
                f"bad method option {item!r} in {method!r}; write field=value with a field "
                f"among {', '.join(sorted(names))}"
            )
        changes[key] = _option_value(getattr(base, key), value, method)
    return replace(base, name=method, **changes)


def _option_value(current: object, value: str, method: str) -> object:
    if value.lower() == "none":
        return None
    if isinstance(current, bool):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ConfigError(f"{value!r} in {method!r} is not true or false")
        return value.lower() in ("true", "1")
    if isinstance(current, str):
        return value
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{value!r} in {method!r} is not a number") from None


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
