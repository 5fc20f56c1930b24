"""Command line: ``python -m recommender {build,recommend,evaluate,info} ...``.

Each subcommand is one plain function; the argparse defaults are the configuration and
``--help`` shows them. Errors the library raises on purpose print one line and exit 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recommender.errors import ConfigError, ImageError, RecommenderError
from recommender.paths import default_dataset, default_model

EXIT_OK, EXIT_ERROR = 0, 1
MAX_SEED = 2**32 - 1


def int_in_range(lo: int, hi: int | None = None):
    """An argparse ``type=``: a whole number from ``lo`` to ``hi`` (inclusive; no upper end
    if ``hi`` is None), refused with a one-line message otherwise."""
    span = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be a whole number {span}, not {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in some of its own messages
    return parse


def method_name(text: str) -> str:
    """An argparse ``type=``: a registered scoring method, or a variant of one
    (``name:field=value,...``, see :func:`recommender.config.get_method`)."""
    from recommender.config import get_method

    try:
        get_method(text)
    except RecommenderError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


method_name.__name__ = "method"


def float_in_range(
    lo: float, hi: float | None = None, *, open_lo: bool = False, open_hi: bool = False
):
    """An argparse ``type=``: a finite number between ``lo`` and ``hi`` (bounds included
    unless ``open_lo`` / ``open_hi``; no upper end if ``hi`` is None)."""
    low = f"> {lo}" if open_lo else f">= {lo}"
    high = "" if hi is None else (f" and < {hi}" if open_hi else f" and <= {hi}")

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        ok = math.isfinite(value) and (value > lo if open_lo else value >= lo)
        if ok and hi is not None:
            ok = value < hi if open_hi else value <= hi
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a number {low}{high}, not {text}")
        return value

    parse.__name__ = "float"
    return parse


def _progress_bar(disable: bool):
    """A ``progress(stage, done, total)`` callback drawing one tqdm bar per stage."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}
    labels = {
        "features": "image features",
        "als": "ALS iterations",
        "evaluate": "evaluation",
        "prior": "image prior",
        "write": "index and model files",
        "calibrate": "hedging calibration",
    }

    def progress(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(
                total=total,
                desc=labels.get(stage, stage),
                unit="img" if stage in ("features", "prior") else "it",
                disable=disable,
                file=sys.stderr,
            )
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return progress


# ------------------------------------------------------- options from the config
def add_config_options(
    parser: argparse.ArgumentParser,
    cls: type,
    only: Sequence[str] | None = None,
    **overrides: dict[str, Any],
) -> None:
    """One option per field of the config dataclass ``cls`` that has a ``"help"`` in its
    metadata (or per field named in ``only``): ``--field-name`` (or ``metadata["flag"]``),
    the field's default, a type checking ``metadata["range"]`` or ``metadata["choices"]``.
    ``overrides[name]`` adds or replaces argparse keywords of one field's option. The
    option's value lands in ``args.<field name>`` (read back by :func:`config_from_args`)."""
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if "help" not in meta or (only is not None and f.name not in only):
            continue
        kwargs: dict[str, Any] = {"default": f.default, "help": meta["help"], "dest": f.name}
        if "range" in meta:
            lo, hi = meta["range"]
            is_int = f.type in (int, "int")
            kwargs["type"] = (
                int_in_range(lo, hi)
                if is_int
                else float_in_range(lo, hi, open_lo=meta.get("open_lo", False))
            )
        if "choices" in meta:
            kwargs["choices"] = meta["choices"]
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        kwargs.update(overrides.get(f.name, {}))
        if "choices" not in kwargs:  # the field's name, not argparse's dest, in the usage
            kwargs.setdefault("metavar", flag[2:].upper().replace("-", "_"))
        parser.add_argument(flag, **kwargs)


def config_from_args(cls: type, args: argparse.Namespace, **given: Any) -> Any:
    """``cls`` from the options :func:`add_config_options` made (and ``given`` fields)."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in names}
    return cls(**{**values, **given})


# ---------------------------------------------------------------------- build
def _spark_conf(pairs: list[str]) -> dict[str, str]:
    conf = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--spark-conf takes KEY=VALUE (e.g. spark.executor.memory=4g), "
                              f"not {pair!r}")  # fmt: skip
        conf[key.strip()] = value
    return conf


def _start_spark(args: argparse.Namespace) -> None:
    """Start the session the Spark engine's stages use, and say where its Python and the
    feature store come from (stderr; nothing with --quiet but a store executors may miss)."""
    from recommender.engines.spark import session
    from recommender.features.store import default_cache_dir

    conf = _spark_conf(args.spark_conf or [])
    if args.spark_wait is not None:
        conf[session.WAIT_CONF] = str(args.spark_wait)
    spark = session.get_session(args.spark_master, conf)
    master = str(spark.sparkContext.master)
    if not args.quiet:
        print(session.python_source(conf), file=sys.stderr)
    store = "a private temporary folder" if args.no_cache else default_cache_dir()
    note = session.store_note(master, store, bool(os.environ.get("HASHTAG_CACHE")))
    if note:
        print(note, file=sys.stderr)


def cmd_build(args: argparse.Namespace) -> int:
    from recommender.build import build_model
    from recommender.config import ALSParams
    from recommender.evaluation.run import BUILD_EVALUATION_ALS
    from recommender.query.recommender import BuildConfig

    if args.skip_existing:
        from recommender.store.model_io import read_model

        try:
            read_model(args.out)
        except RecommenderError:
            pass
        else:
            print(f"A model is already at {args.out}; not rebuilding (drop --skip-existing to).")
            return EXIT_OK
    from recommender.store.model_io import check_output

    check_output(args.out)  # before any work, so that nothing is built for a folder refused
    if args.engine == "spark":
        _start_spark(args)
    elif args.spark_master or args.spark_conf or args.spark_wait is not None:
        raise ConfigError("--spark-master, --spark-conf and --spark-wait need --engine spark")
    if args.evaluate and args.engine != BUILD_EVALUATION_ALS:
        print(
            f"--evaluate fits its models with the {BUILD_EVALUATION_ALS} ALS (implicit), not "
            f"the {args.engine} engine's; the manifest records it as evaluation.als",
            file=sys.stderr,
        )
    config = config_from_args(BuildConfig, args, als=config_from_args(ALSParams, args))
    from recommender.data.datasets import ReadOptions

    _rec, summary = build_model(
        args.data[0] if len(args.data) == 1 else args.data,
        args.out,
        config,
        format=args.format,
        use_cache=not args.no_cache,
        progress=_progress_bar(args.quiet),
        evaluate=args.evaluate,
        engine=args.engine,
        shard_size=args.shard_size,
        read_options=ReadOptions(
            archived_posts=args.archived_posts, comment_hashtags=args.comment_hashtags
        ),
    )
    evaluation = _rec.manifest.get("evaluation")
    if evaluation:
        summary["evaluation"] = evaluation
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    print(f"Model written to {summary['model']}")
    if evaluation:
        print(
            f"evaluation ({evaluation['splits']} splits, {evaluation['test_posts']} test posts): "
            f"{evaluation['method']} recall@10 {evaluation['recall@10']:.3f} (beyond the "
            f"search hashtag {evaluation['beyond_recall@10']:.3f}), popularity "
            f"{evaluation['popularity_recall@10']:.3f}; off_topic@10 "
            f"{evaluation.get('off_topic@10')}, own_category_hit@10 "
            f"{evaluation.get('own_category_hit@10')}"
        )
    print(summary["dataset_report"])
    print(
        f"posts: {summary['posts']}  images indexed: {summary['images']}  "
        f"hashtags: {summary['hashtags']}  post-hashtag pairs: {summary['pairs']}"
    )
    print(
        f"images embedded: {summary['images_embedded']}  from cache: "
        f"{summary['images_from_cache']}  unreadable: {summary['images_unreadable']}  "
        f"duplicates: {summary['images_duplicate']}"
    )
    ips = summary.get("images_per_second")
    print(
        f"time: {summary['build_seconds']:.1f} s (features {summary['features_seconds']:.1f} s"
        + (f", {ips:.0f} images/s" if ips else "")
        + f"; ALS {summary['fit_seconds']:.1f} s)"
    )
    if summary["problems"]:
        print(f"first problems ({len(summary['problems'])} shown):")
        for line in summary["problems"][:10]:
            print(f"  {line}")
    return EXIT_OK


# ------------------------------------------------------------------ recommend
CSV_COLUMNS = ("image", "rank", "hashtag", "score", "posts", "tier", "error")
"""``recommend --format csv``: one row per (image, rank); a bad image is one row with
``rank`` empty and the reason in ``error``."""


def recommendation_rows(image: str, result=None, error: str = "") -> list[dict[str, Any]]:
    """The CSV rows of one image: one per suggested hashtag, best first (rank 1)."""
    if result is None:
        return [{**dict.fromkeys(CSV_COLUMNS, ""), "image": image, "error": error}]
    return [
        {
            "image": image,
            "rank": rank,
            "hashtag": t.tag,
            "score": f"{t.score:.6f}",
            "posts": t.posts,
            "tier": t.tier,
            "error": "",
        }
        for rank, t in enumerate(result.hashtags, 1)
    ]


def cmd_recommend(args: argparse.Namespace) -> int:
    import csv

    from recommender.data.hashtags import load_blocklist
    from recommender.query.recommender import EMBED_BATCH, HashtagRecommender
    from recommender.ui.presentation import network_sees, search_tags_line

    fmt = "json" if args.json else args.format
    rec = HashtagRecommender.load(args.model)
    blocklist = None if args.no_blocklist else load_blocklist(args.blocklist or ())
    # Embedded in batches; more than one batch shows a bar on stderr.
    bar = _progress_bar(len(args.images) <= EMBED_BATCH)
    features, classes, problems = rec.embed_many(
        args.images, progress=lambda done, total: bar("features", done, total)
    )
    writer = csv.DictWriter(sys.stdout, CSV_COLUMNS, lineterminator="\n")
    if fmt == "csv":
        writer.writeheader()
    status = EXIT_OK
    for i, (image, problem) in enumerate(zip(args.images, problems, strict=True)):
        try:
            if problem is not None:
                raise ImageError(problem)
            result = rec.recommend_features(
                features[i],
                n_neighbours=args.n,
                k=args.k,
                method=args.method,
                blocklist=blocklist,
                classes=None if classes is None else classes[i],
            )
        except RecommenderError as exc:
            status = EXIT_ERROR
            if fmt == "json":
                print(json.dumps({"image": image, "error": str(exc)}, ensure_ascii=False))
            elif fmt == "csv":
                writer.writerows(recommendation_rows(image, error=str(exc)))
            else:
                print(f"{image}: error: {exc}", file=sys.stderr)
            continue
        if fmt == "json":
            print(json.dumps({"image": image, **result.to_dict()}, ensure_ascii=False))
            continue
        if fmt == "csv":
            writer.writerows(recommendation_rows(image, result))
            continue
        print(f"{image}  ({result.method}, {len(result.neighbours)} neighbours)")
        print("  hashtags:  " + " ".join(f"#{t.tag}" for t in result.hashtags))
        if result.seen:
            print(f"  {network_sees(result.seen)}")
        if result.search_tags:
            print(f"  {search_tags_line(result.search_tags)}")
        for t in result.hashtags:
            moved = "  (moved below the top 5)" if t.moved_down else ""
            print(f"    #{t.tag:<30} {t.score:8.4f}  {t.posts:>6} posts  {t.tier}{moved}")
        print("  nearest training images:")
        for nb in result.neighbours:
            tags = " ".join(f"#{t}" for t in nb.hashtags[:8])
            print(f"    {nb.similarity:6.3f}  {nb.image}  {tags}")
    return status


# ------------------------------------------------------------------- evaluate
def cmd_evaluate(args: argparse.Namespace) -> int:
    from recommender.data.hashtags import load_blocklist
    from recommender.evaluation import (
        POPULARITY,
        candidate,
        default_candidates,
        evaluate_dataset,
        plot_recall_curves,
    )
    from recommender.query.recommender import BuildConfig

    method = args.method
    if args.compare:
        # Only the two methods, no neighbour sweep: only the ALS fits they need.
        compared = [candidate(key) for key in args.compare]
        if compared[0].key == compared[1].key:
            raise ConfigError("--compare needs two different methods")
        candidates = compared
        method = next((c.method for c in compared if c.key != POPULARITY), method)
        sweep: dict = {"n_sweep": ()}
    else:
        candidates = default_candidates(args.method, list(args.neighbours), args.methods)
        sweep = {}
    config = config_from_args(BuildConfig, args, method=method)
    result = evaluate_dataset(
        args.data,
        config,
        format=args.format,
        use_cache=not args.no_cache,
        progress=_progress_bar(args.quiet),
        candidates=candidates,
        n_splits=args.splits,
        test_fraction=args.test_fraction,
        seed=args.seed,
        blocklist=load_blocklist() if args.blocklist else None,
        **sweep,
    )
    if args.plot:
        plot_recall_curves(result, args.plot)
    out = result.to_dict()
    if args.compare:
        a, b = args.compare
        out["compare"] = {"a": a, "b": b, "paired": result.paired(a, b)}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(result.table())
        if args.compare:
            print(result.paired_table(*args.compare))
        info = result.info
        blocked = "; block list on" if args.blocklist else ""
        print(
            f"time: {info['seconds']:.1f} s (features {info['features_seconds']:.1f} s, "
            f"{info['images_embedded']} embedded; ALS fits {info['fit_seconds']:.1f} s; "
            f"ranking {info['rank_seconds']:.1f} s){blocked}"
        )
        if args.plot:
            print(f"plot written to {args.plot}")
    return EXIT_OK


# ----------------------------------------------------------------------- info
def cmd_info(args: argparse.Namespace) -> int:
    from recommender.query.recommender import HashtagRecommender
    from recommender.store.model_io import folder_size

    rec = HashtagRecommender.load(args.model)
    info = rec.info()
    info["size_bytes"] = folder_size(args.model)
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return EXIT_OK
    cfg = info.get("config", {})
    ds = info.get("dataset", {})
    counts = info.get("counts", {})
    timings = info.get("timings", {})
    print(f"model:          {Path(args.model)}  ({info['size_bytes'] / 1e6:.1f} MB)")
    print(
        f"format:         {info.get('format')} v{info.get('format_version')} "
        f"(library {info.get('library_version')})"
    )
    print(f"created:        {info.get('created')}")
    print(
        f"data set:       {ds.get('path')} ({ds.get('format')}, "
        f"fingerprint {str(ds.get('fingerprint'))[:12]})"
    )
    bb = info.get("backbone", {})
    print(
        f"backbone:       {bb.get('name')} ({bb.get('input_size')} px, {bb.get('dim')}-d, "
        f"weights: {bb.get('weights')}"
        + (f", sha256 {bb['weights_sha256'][:16]}" if bb.get("weights_sha256") else "")
        + ")"
    )
    als = cfg.get("als", {})
    print("ALS:            " + ", ".join(f"{k}={v}" for k, v in als.items()))
    m = cfg.get("method", {})
    print("method:         " + ", ".join(f"{k}={v}" for k, v in m.items()))
    engine = info.get("engine") or {"name": "local"}
    print("engine:         " + ", ".join(f"{k}={v}" for k, v in engine.items()))
    print("counts:         " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    if timings:
        print("build:          " + ", ".join(f"{k}={v}" for k, v in timings.items()))
    calibration = info.get("hedge_calibration")
    if isinstance(calibration, dict):
        fitted = calibration.get("fitted") or []
        print(
            f"hedging:        calibrated on {calibration.get('images')} of its photos, "
            f"{sum(bool(f) for f in fitted)} of {len(fitted)} categories"
        )
    from recommender.ui.presentation import evaluation_summary, exact_figures

    evaluation = evaluation_summary(info)
    if evaluation is not None:
        figures = exact_figures(evaluation)
        width = max(len(name) for name, _ in figures)
        print("evaluation:")
        for name, value in figures:
            print(f"  {name:<{width}}  {value}")
    return EXIT_OK


# ---------------------------------------------------------------------- serve
def cmd_serve(args: argparse.Namespace) -> int:
    from recommender.paths import REPO_ROOT, in_checkout
    from recommender.store.model_io import model_version
    from recommender.ui import preload

    if not in_checkout():
        raise ConfigError(
            "the page (app.py) ships with the repository: run serve from a clone of it"
        )
    os.environ["HASHTAG_MODEL"] = str(args.model)
    from recommender.ui.uploads import install_upload_gate

    install_upload_gate()  # uploads over a session's bounds refused before their bodies
    try:
        preload.start(args.model, model_version(args.model))
    except RecommenderError:
        pass  # no model yet: the page offers to build one
    from streamlit.web import cli as streamlit_cli

    sys.argv = [
        "streamlit",
        "run",
        str(REPO_ROOT / "app.py"),
        f"--server.address={args.address}",
        f"--server.port={args.port}",
        # No source watcher when serving: after every script run that imported modules it
        # resolved the path of each of the thousands loaded (TensorFlow's), on the server's
        # event loop: 0.3 s of a first upload. `streamlit run app.py` keeps it for editing.
        "--server.fileWatcherType=none",
    ]
    return streamlit_cli.main()


# --------------------------------------------------------------------- parser
def _prog() -> str:
    """What the user typed: the console script's name, or ``python -m recommender``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name.startswith("hashtag-recommender") else "python -m recommender"


def build_parser() -> argparse.ArgumentParser:
    from recommender.config import METHODS, ALSParams, BuildConfig
    from recommender.data.datasets import FORMATS, ReadOptions
    from recommender.data.formats import COMMENT_HASHTAGS
    from recommender.data.hashtags import INSTAGRAM_MAX_HASHTAGS
    from recommender.query.recommender import MAX_NEIGHBOURS
    from recommender.query.scoring import DEFAULT_NEIGHBOURS
    from recommender.vision.backbones import BACKBONES

    METHOD_CHOICES = (  # noqa: N806 - a constant of this function
        f"{', '.join(sorted(METHODS))}, or a variant name:field=value,... "
        "(e.g. profiles_prior:calibrated_hedge=0.3)"
    )

    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="Recommend Instagram hashtags for photos from similar posts.",
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="build a model from a data set", formatter_class=fmt)
    b.add_argument(
        "data",
        nargs="*",
        default=[str(default_dataset())],
        help="data set: a folder, a manifest or an Instagram export .zip (every part of a "
        "split export: part1.zip part2.zip ...); $HASHTAG_DATASET",
    )
    b.add_argument("--out", default=str(default_model()), help="model folder to write")
    b.add_argument(
        "--format", default="auto", choices=FORMATS, help="data set layout (README's table)"
    )
    b.add_argument(
        "--archived-posts",
        action="store_true",
        help="Instagram export: also read the posts the account archived (hidden from the "
        "profile; archived_posts.json)",
    )
    b.add_argument(
        "--comment-hashtags",
        default=ReadOptions().comment_hashtags,
        choices=COMMENT_HASHTAGS,
        help="instaloader download with --comments: a post also gets the hashtags of its "
        "owner's own comments (owner), of everyone's comments (all), or none",
    )
    # BuildConfig's and ALSParams' fields: defaults and help written once, in the dataclasses
    method_help = BuildConfig.__dataclass_fields__["method"].metadata["help"]
    add_config_options(
        b,
        BuildConfig,
        backbone={"choices": BACKBONES},
        method={"type": method_name, "help": f"{method_help}: {METHOD_CHOICES}"},
    )
    add_config_options(b, ALSParams)
    b.add_argument("--no-cache", action="store_true", help="ignore the feature cache")
    from recommender.engines import DEFAULT_ENGINE, ENGINES
    from recommender.features.shards import DEFAULT_SHARD_SIZE, MIN_AUTO_SHARD_SIZE

    b.add_argument(
        "--engine",
        default=DEFAULT_ENGINE,
        choices=sorted(ENGINES),
        help="who runs the embed stage and the ALS fit (spark: pip install -r "
        "requirements-spark.txt)",
    )
    b.add_argument(
        "--spark-master",
        default=None,
        metavar="URL",
        help="with --engine spark: local[N], spark://HOST:PORT, yarn or k8s://...; default: "
        "spark-submit's master, else local[*]",
    )
    b.add_argument(
        "--spark-conf",
        action="append",
        metavar="KEY=VALUE",
        help="with --engine spark: a Spark setting for the session, repeatable (e.g. "
        "spark.executor.memory=4g, spark.checkpoint.dir=hdfs:///tmp/ckpt)",
    )
    b.add_argument(
        "--spark-wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --engine spark: stop with a message when no executor is there for this "
        "long, at the start or during a job (default: 60)",
    )
    b.add_argument(
        "--shard-size",
        type=int_in_range(1, 1_000_000),
        default=None,
        help=f"images per feature shard: a killed build re-embeds at most one shard (default: "
        f"{DEFAULT_SHARD_SIZE:,}; with --engine spark fewer, down to {MIN_AUTO_SHARD_SIZE}, when "
        "that gives every task slot two shards)",
    )
    b.add_argument(
        "--skip-existing",
        action="store_true",
        help="do nothing if a loadable model is already at --out",
    )
    b.add_argument(
        "--evaluate",
        type=int_in_range(0, 100),
        default=0,
        metavar="SPLITS",
        help="first evaluate the method against popularity on this many held-out splits "
        "and store the result in the model (0: do not)",
    )
    b.add_argument("--json", action="store_true", help="print the summary as JSON")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_build)

    from recommender.evaluation import DEFAULT_SPLITS, DEFAULT_TEST_FRACTION

    e = sub.add_parser(
        "evaluate",
        help="measure recommendation quality on held-out posts",
        description="Hold out posts with an image and 2+ hashtags (stratified by search "
        "hashtag), train as build does on the rest, and score every method's ranking of "
        "the held-out posts' hashtags; mean ± std over splits.",
        formatter_class=fmt,
    )
    e.add_argument(
        "data",
        nargs="?",
        default=str(default_dataset()),
        help="data set: a folder, a manifest or an Instagram export .zip; $HASHTAG_DATASET",
    )
    e.add_argument(
        "--format", default="auto", choices=FORMATS, help="data set layout (README's table)"
    )
    add_config_options(
        e,
        BuildConfig,
        only=("backbone", "weights", "method"),
        backbone={"choices": BACKBONES},
        method={"type": method_name, "help": "the default method: " + METHOD_CHOICES},
    )
    e.add_argument(
        "--methods",
        nargs="+",
        type=method_name,
        default=None,
        help="scoring methods to compare (default: all; popularity is always shown)",
    )
    e.add_argument(
        "--neighbors",
        "--neighbours",
        dest="neighbours",
        metavar="N",
        nargs="+",
        type=int_in_range(1, MAX_NEIGHBOURS),
        default=[DEFAULT_NEIGHBOURS, 30],
        help="numbers of neighbours to evaluate every method at",
    )
    e.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="evaluate only methods A and B (a method name, name:field=value,... for a "
        "variant, /nN for N neighbours, or popularity) and print the mean paired "
        "difference A - B over splits with its standard error",
    )
    e.add_argument(
        "--splits", type=int_in_range(1, 100), default=DEFAULT_SPLITS, help="random splits"
    )
    e.add_argument(
        "--test-fraction",
        type=float_in_range(0.0, 1.0, open_lo=True, open_hi=True),
        default=DEFAULT_TEST_FRACTION,
        help="share of each search hashtag's evaluable posts held out",
    )
    e.add_argument(
        "--seed", type=int_in_range(0, MAX_SEED), default=0, help="split s uses seed + s"
    )
    e.add_argument(
        "--blocklist",
        action="store_true",
        help="never recommend the packaged spam/engagement-bait hashtags (as the page does)",
    )
    e.add_argument("--plot", metavar="FILE", help="write a PNG of recall@k, k = 1..20")
    e.add_argument("--no-cache", action="store_true", help="ignore the feature cache")
    e.add_argument("--json", action="store_true", help="print the results as JSON")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("recommend", help="recommend hashtags for images", formatter_class=fmt)
    r.add_argument("images", nargs="+", help="image files (JPEG, PNG, WebP, ...)")
    r.add_argument("--model", default=str(default_model()), help="model folder; $HASHTAG_MODEL")
    for short, names, default, most, what in (
        (
            "-n",
            ("--neighbors", "--neighbours"),
            DEFAULT_NEIGHBOURS,
            MAX_NEIGHBOURS,
            "nearest training images that vote (the original method always uses 5)",
        ),
        (
            "-k",
            ("--hashtags",),
            10,
            INSTAGRAM_MAX_HASHTAGS,
            "hashtags to recommend (Instagram's most)",
        ),
    ):
        r.add_argument(
            short,
            *names,
            dest=short[1],
            type=int_in_range(1, most),
            default=default,
            help=f"{what} (1-{most})",
        )
    r.add_argument(
        "--method",
        default=None,
        type=method_name,
        help="scoring method (default: the model's): " + METHOD_CHOICES + "; original is the "
        "original project's algorithm on its own factors, with no block list",
    )
    r.add_argument(
        "--blocklist",
        action="append",
        metavar="FILE",
        help="extra block-list file (one hashtag per line); repeatable",
    )
    r.add_argument(
        "--no-blocklist", action="store_true", help="do not filter spam/engagement-bait hashtags"
    )
    r.add_argument(
        "--format",
        default="text",
        choices=["text", "json", "csv"],
        help="text for people; json: one object per image; csv: one row per (image, rank), "
        "columns " + ",".join(CSV_COLUMNS) + " (a bad image: one row, rank empty, the reason "
        "in error)",
    )
    r.add_argument("--json", action="store_true", help="the same as --format json")
    r.set_defaults(func=cmd_recommend)

    s = sub.add_parser(
        "serve",
        help="start the page, with the model loaded and warmed before the first visitor",
        formatter_class=fmt,
    )
    s.add_argument("--model", default=str(default_model()), help="model folder; $HASHTAG_MODEL")
    s.add_argument("--port", type=int_in_range(1, 65535), default=8501, help="port to listen on")
    s.add_argument(
        "--address", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine)"
    )
    s.set_defaults(func=cmd_serve)

    i = sub.add_parser("info", help="describe a model", formatter_class=fmt)
    i.add_argument(
        "model", nargs="?", default=str(default_model()), help="model folder; $HASHTAG_MODEL"
    )
    i.add_argument(
        "--json", action="store_true", help="print the whole manifest (without checksums) as JSON"
    )
    i.set_defaults(func=cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; the exit status. Also the ``hashtag-recommender`` console script."""
    # TensorFlow's start-up chatter hides the output users came for.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except RecommenderError as exc:  # anything else is a bug: let its traceback show
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
