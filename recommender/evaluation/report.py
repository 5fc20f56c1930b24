"""What an evaluation gives: per candidate and metric, the values over splits, and their
summaries (the manifest's ``"evaluation"``, the JSON, the text tables, the paired
difference of ``--compare A B``) and the recall curves' plot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recommender.evaluation.metrics import CURVE_K, OFF_TOPIC, OFF_TOPIC_5, OWN_HIT, POPULARITY


@dataclass
class EvaluationResult:
    """Per candidate: metric -> per-split values; plus the protocol's facts."""

    per_split: dict[str, dict[str, list[float]]]
    curves: dict[str, list[np.ndarray]]
    ceiling: list[float]
    unseen: list[float]
    test_posts: list[int]
    default: str
    n_sweep: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def mean(self, key: str, metric: str) -> float:
        return float(np.mean(self.per_split[key][metric]))

    def std(self, key: str, metric: str) -> float:
        return float(np.std(self.per_split[key][metric]))

    def _rounded_mean(self, key: str, metric: str) -> float | None:
        values = self.per_split[key].get(metric)
        return round(float(np.mean(values)), 4) if values else None

    def paired(self, a: str, b: str) -> dict[str, dict[str, float | int | None]]:
        """Per metric both have: mean over splits of ``a - b``, its standard error, splits.

        The standard error is the sample standard deviation of the differences over the
        square root of the number of splits (None with one split).
        """
        out: dict[str, dict[str, float | int | None]] = {}
        for metric, values in self.per_split[a].items():
            other = self.per_split[b].get(metric)
            if other is None or len(other) != len(values):
                continue
            diff = np.asarray(values, dtype=np.float64) - np.asarray(other, dtype=np.float64)
            se = float(np.std(diff, ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else None
            out[metric] = {"mean": float(diff.mean()), "se": se, "splits": len(diff)}
        return out

    def paired_table(self, a: str, b: str) -> str:
        """The paired differences ``a - b`` as plain text, one metric a line."""
        rows = self.paired(a, b)
        n = max((int(r["splits"] or 0) for r in rows.values()), default=0)
        lines = [f"paired difference {a} - {b} over {n} splits (mean ± standard error):"]
        width = max((len(m) for m in rows), default=0)
        for metric, r in rows.items():
            se = "n/a" if r["se"] is None else f"{r['se']:.4f}"
            a_mean, b_mean = self.mean(a, metric), self.mean(b, metric)
            lines.append(
                f"  {metric:<{width}}  {r['mean']:+.4f} ± {se}   ({a_mean:.4f} vs {b_mean:.4f})"
            )
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        """The ``"evaluation"`` entry of a model manifest (the page reads these keys)."""
        return {
            "method": self.default,
            "recall@10": round(self.mean(self.default, "recall@10"), 4),
            "beyond_recall@10": round(self.mean(self.default, "beyond_recall@10"), 4),
            OFF_TOPIC: self._rounded_mean(self.default, OFF_TOPIC),
            OFF_TOPIC_5: self._rounded_mean(self.default, OFF_TOPIC_5),
            OWN_HIT: self._rounded_mean(self.default, OWN_HIT),
            "popularity_recall@10": round(self.mean(POPULARITY, "recall@10"), 4)
            if POPULARITY in self.per_split
            else None,
            "splits": len(self.ceiling),
            "test_posts": int(round(float(np.mean(self.test_posts)))),
        }

    def to_dict(self) -> dict[str, Any]:
        """Means (``metric``) and standard deviations (``metric_std``) over splits."""
        methods = {}
        for key, metrics in self.per_split.items():
            entry: dict[str, Any] = {}
            for metric, values in metrics.items():
                entry[metric] = round(float(np.mean(values)), 4)
                entry[f"{metric}_std"] = round(float(np.std(values)), 4)
            for metric in (OFF_TOPIC, OFF_TOPIC_5, OWN_HIT):  # null when the data set cannot say
                entry.setdefault(metric, None)
            entry["per_split_recall@10"] = [round(float(v), 4) for v in metrics["recall@10"]]
            entry["recall_curve"] = [round(float(v), 4) for v in np.mean(self.curves[key], axis=0)]
            methods[key] = entry
        sweep = {
            str(n): {m: round(float(np.mean(v)), 4) for m, v in values.items()}
            for n, values in self.n_sweep.items()
        }
        return {
            "methods": methods,
            "default": self.default,
            "ceiling_recall@10": round(float(np.mean(self.ceiling)), 4),
            "unseen_test_tag_share": round(float(np.mean(self.unseen)), 4),
            "splits": len(self.ceiling),
            "test_posts": [int(t) for t in self.test_posts],
            "default_n_sweep": sweep,
            **self.info,
        }

    def table(self) -> str:
        """A plain-text table: mean ± std over splits for every candidate."""
        cols = [
            "precision@5", "recall@5", "recall@10", "hit@10", "ndcg@10",
            "beyond_recall@10", "beyond_ndcg@10", "coverage@10", "generic@10",
            OFF_TOPIC_5, OFF_TOPIC, OWN_HIT,
        ]  # fmt: skip
        width = max(len(k) for k in self.per_split) + 2
        lines = [" " * width + " ".join(f"{c:>16}" for c in cols)]
        for key in self.per_split:
            mark = "*" if key == self.default else " "
            cells = [
                f"{self.mean(key, c):.3f} ± {self.std(key, c):.3f}"
                if self.per_split[key].get(c)
                else "n/a"
                for c in cols
            ]
            lines.append(f"{mark}{key:<{width - 1}}" + " ".join(f"{c:>16}" for c in cells))
        lines.append(
            f"ceiling recall@10: {np.mean(self.ceiling):.3f}  (test hashtags never seen in "
            f"training: {np.mean(self.unseen):.1%}); {len(self.ceiling)} splits, "
            f"{np.mean(self.test_posts):.0f} test posts each; * = default"
        )
        if self.n_sweep:
            lines.append(
                f"{self.default} by number of neighbours (recall@10 / beyond / hit@10): "
                + ", ".join(
                    f"n={n}: {np.mean(v['recall@10']):.3f}/{np.mean(v['beyond_recall@10']):.3f}"
                    f"/{np.mean(v['hit@10']):.3f}"
                    for n, v in self.n_sweep.items()
                )
            )
        return "\n".join(lines)


def plot_recall_curves(result: EvaluationResult, path: str | Path) -> Path:
    """Write a PNG of mean recall@k for k = 1..20, one line per candidate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = np.arange(1, CURVE_K + 1)
    fig, ax = plt.subplots(figsize=(9, 6), dpi=110)
    colours: dict[str, Any] = {}
    for key, curves in result.curves.items():
        mean = np.mean(curves, axis=0)
        bold = key == result.default
        method = key.split("/")[0]  # the same method at another n: same colour, dashed
        colour = "black" if method == result.default else colours.get(method)
        line = ax.plot(
            ks,
            mean,
            color=colour,
            ls="--" if "/" in key else "-",
            lw=2.6 if bold else 1.3,
            label=key + (" (default)" if bold else ""),
        )[0]
        colours.setdefault(method, line.get_color())
    ax.axhline(float(np.mean(result.ceiling)), color="grey", ls="--", lw=1, label="ceiling @10")
    ax.set_xlabel("k (hashtags recommended)")
    ax.set_ylabel("recall@k (mean over splits)")
    ax.set_xticks(ks)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"Held-out posts, {len(result.ceiling)} splits")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
