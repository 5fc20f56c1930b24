"""Experiment: do other image features find better neighbours than the default ones?

The default method (``profiles_prior``, n=5) is evaluated on the same 5 splits of the demo
data set as ``python -m recommender evaluate``, once per feature variant. Every variant
comes from EfficientNet-Lite0 (the default backbone's own weights) or from plain pixel
statistics, computed here for the 3,300 images:

1. baseline: global-average-pooled 1280-d head at 224x224 (what the project uses);
2. flip TTA: mean of the image's and its mirror's features, re-normalised;
3. higher input resolution (288, 320): the network is fully convolutional;
4. intermediate stages (stem 32-ch, 40/80/112/192/320-ch stage outputs), average pooled,
   each block centred + L2-normalised + weighted, concatenated with the head; max / GeM
   pooling of the head; channel std of stages ("style", as in AdaIN / Gram statistics);
5. colour / layout statistics (HSV histogram, colour moments, 4x4 mean-colour grid);
6. combinations, and mean-centring of the head.

Also reported: the median rank, among the training images, of the training post with the
most similar tag list (Jaccard > 0.5, "same account"), and each variant's extra cost per
image at batch 1.

Centring subtracts the mean feature of all 3,300 images (unsupervised; a constant vector a
model would store). Arrays are cached in /tmp/quality_features/; delete it to recompute.

    cd /work/main && /work/venv/bin/python benchmarks/quality_features.py
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recommender.data.datasets import load_dataset  # noqa: E402
from recommender.engines.embed_stage import dataset_features  # noqa: E402
from recommender.evaluation import (  # noqa: E402
    Candidate,
    evaluate,
    image_keys,
    stratified_splits,
)
from recommender.query.recommender import BuildConfig  # noqa: E402
from recommender.vision import backbones, images  # noqa: E402

DATA = "/work/shared/datasets/instagram-2019"
CACHE = Path("/tmp/quality_features")
SIZES = (224, 288, 320)
STAGES = {  # layer name -> label (channels)
    "bn0_relu6": "stem32",
    "blocks_4_add": "s40",
    "blocks_7_add": "s80",
    "blocks_10_add": "s112",
    "blocks_14_add": "s192",
    "blocks_15_bn2": "s320",
}
HEAD = "bn1_relu6"
GEM_P = 3.0
CHUNK = 32


# ------------------------------------------------------------------------- networks
def lite0_any_size():
    """EfficientNet-Lite0 on inputs of any size, with the default backbone's weights."""
    tf, keras = backbones._import_tf()
    ref = backbones.get_backbone("efficientnet_lite0")
    # side=None: keras.Input((None, None, 3))
    _, full, _, _ = backbones._lite_models(keras, backbones._LITE["efficientnet_lite0"], None)
    full.set_weights(ref._keras_model.get_weights())
    names = [HEAD, *STAGES]
    maps = keras.Model(full.input, [full.get_layer(n).output for n in names])
    return tf, ref, maps, names


def pooled_fn(tf, maps, names, flip: bool, stages: bool = True):
    """Batch of uint8 images -> dict of pooled vectors (not normalised)."""

    def run(images_u8):
        x = tf.reverse(images_u8, axis=[2]) if flip else images_u8
        outs = maps(x, training=False)
        out = {}
        head = outs[0]
        out["head_avg"] = tf.reduce_mean(head, axis=[1, 2])
        out["head_max"] = tf.reduce_max(head, axis=[1, 2])
        out["head_gem"] = tf.pow(
            tf.reduce_mean(tf.pow(tf.maximum(head, 1e-6), GEM_P), axis=[1, 2]), 1.0 / GEM_P
        )
        if stages:
            for name, fmap in zip(names[1:], outs[1:], strict=True):
                label = STAGES[name]
                mean, var = tf.nn.moments(fmap, axes=[1, 2])
                out[f"{label}_avg"] = mean
                out[f"{label}_std"] = tf.sqrt(var + 1e-6)
        return out

    return tf.function(run, input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])


# ---------------------------------------------------------------------- colour stats
def colour_stats(img224: np.ndarray) -> dict[str, np.ndarray]:
    """Cheap pixel statistics of a 224x224 uint8 RGB image."""
    from PIL import Image

    hsv = np.asarray(Image.fromarray(img224).convert("HSV"), dtype=np.float32) / 255.0
    rgb = img224.astype(np.float32) / 255.0
    h = np.minimum((hsv[..., 0] * 8).astype(int), 7)
    s = np.minimum((hsv[..., 1] * 3).astype(int), 2)
    v = np.minimum((hsv[..., 2] * 3).astype(int), 2)
    hist = np.bincount((h * 9 + s * 3 + v).ravel(), minlength=72).astype(np.float32)
    hist = np.sqrt(hist / hist.sum())  # Hellinger
    moments = np.concatenate([
        rgb.reshape(-1, 3).mean(0), rgb.reshape(-1, 3).std(0),
        hsv[..., 1:].reshape(-1, 2).mean(0), hsv[..., 1:].reshape(-1, 2).std(0),
    ])  # fmt: skip
    grid = rgb.reshape(4, 56, 4, 56, 3).mean(axis=(1, 3)).ravel()
    return {"col_hist": hist, "col_moments": moments, "col_grid": grid}


# ------------------------------------------------------------------------ extraction
def extract(paths: list[Path]) -> dict[str, np.ndarray]:
    CACHE.mkdir(parents=True, exist_ok=True)
    out_file = CACHE / "arrays.npz"
    if out_file.exists():
        with np.load(out_file) as z:
            arrays = {k: z[k] for k in z.files}
        if all(arrays[k].shape[0] == len(paths) for k in arrays):
            return arrays
    tf, ref, maps, names = lite0_any_size()
    fns = {
        ("224", False): pooled_fn(tf, maps, names, False),
        ("224", True): pooled_fn(tf, maps, names, True),
        ("288", False): pooled_fn(tf, maps, names, False),
        ("288", True): pooled_fn(tf, maps, names, True, stages=False),
        ("320", False): pooled_fn(tf, maps, names, False, stages=False),
    }

    def prepare(path):
        img = images.open_image(path)
        return {s: images.to_model_input(img, s) for s in SIZES}

    parts: dict[str, list[np.ndarray]] = {}
    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        for i in range(0, len(paths), CHUNK):
            batch = list(pool.map(prepare, paths[i : i + CHUNK]))
            by_size = {s: np.stack([b[s] for b in batch]) for s in SIZES}
            got: dict[str, np.ndarray] = {}
            for (size, flip), fn in fns.items():
                res = fn(by_size[int(size)])
                for k, v in res.items():
                    got[f"r{size}{'_flip' if flip else ''}_{k}"] = v.numpy()
            got["ref_embed"] = ref.embed(by_size[224])
            for img in by_size[224]:
                for k, v in colour_stats(img).items():
                    parts.setdefault(k, []).append(v[None])
            for k, v in got.items():
                parts.setdefault(k, []).append(v)
            done = min(i + CHUNK, len(paths))
            el = time.perf_counter() - start
            print(f"  extracted {done}/{len(paths)} in {el:.0f}s", flush=True)
    arrays = {k: np.concatenate(v).astype(np.float32) for k, v in parts.items()}
    np.savez(out_file, **arrays)
    return arrays


# ------------------------------------------------------------------------- variants
def l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def block(a: dict[str, np.ndarray], key: str, centre: bool = True, zscore: bool = False):
    x = a[key].astype(np.float64)
    if zscore:
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    elif centre:
        x = x - x.mean(0)
    return l2(x)


def combine(blocks: list[tuple[np.ndarray, float]]) -> np.ndarray:
    return l2(np.concatenate([w * b for b, w in blocks], axis=1)).astype(np.float32)


def head(a, key="r224_head_avg", centre=False):
    return block(a, key, centre=centre)


def variants(a: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, str]]:
    """name -> (features, which cost group)"""
    v: dict[str, tuple[np.ndarray, str]] = {}
    base = head(a)
    v["baseline (224 avg)"] = (base, "base")
    flip = l2(l2(a["r224_head_avg"]) + l2(a["r224_flip_head_avg"]))
    v["flip TTA 224"] = (flip.astype(np.float32), "flip")
    v["288 avg"] = (head(a, "r288_head_avg"), "288")
    v["320 avg"] = (head(a, "r320_head_avg"), "320")
    flip288 = l2(l2(a["r288_head_avg"]) + l2(a["r288_flip_head_avg"]))
    v["288 + flip TTA"] = (flip288.astype(np.float32), "288flip")
    v["224 head GeM p=3"] = (head(a, "r224_head_gem"), "base")
    v["224 head max"] = (head(a, "r224_head_max"), "base")
    v["224 avg centred"] = (head(a, centre=True).astype(np.float32), "base")
    v["224 avg+max (1:1)"] = (combine([(base, 1), (head(a, "r224_head_max"), 1)]), "base")
    for st in ("s112", "s192", "s320"):
        for w in (0.5, 1.0):
            v[f"head + {st}_avg c (w={w})"] = (
                combine([(base, 1), (block(a, f"r224_{st}_avg"), w)]),
                "stages",
            )
    for w in (0.3, 0.5, 0.7):
        v[f"head + s112+s192 avg c (w={w} each)"] = (
            combine([(base, 1), (block(a, "r224_s112_avg"), w), (block(a, "r224_s192_avg"), w)]),
            "stages",
        )
    for w in (0.3, 0.5):
        v[f"head + stem+s40 avg c (w={w} each)"] = (
            combine([(base, 1), (block(a, "r224_stem32_avg"), w), (block(a, "r224_s40_avg"), w)]),
            "stages",
        )
    for w in (0.3, 0.5):
        v[f"head + style std s40+s80 z (w={w} each)"] = (
            combine(
                [
                    (base, 1),
                    (block(a, "r224_s40_std", zscore=True), w),
                    (block(a, "r224_s80_std", zscore=True), w),
                ]
            ),
            "stages",
        )
    for key in ("col_hist", "col_moments", "col_grid"):
        for w in (0.2, 0.4):
            z = key != "col_hist"
            v[f"head + {key} (w={w})"] = (
                combine([(base, 1), (block(a, key, zscore=z), w)]),
                "colour",
            )
    return v


def combo_variants(a, picks: list[str]) -> dict[str, tuple[np.ndarray, str]]:
    """Combinations built after the first pass (see main)."""
    v = {}
    fl = l2(l2(a["r288_head_avg"]) + l2(a["r288_flip_head_avg"]))
    fl_c = l2(fl - fl.mean(0))
    v["288 flip TTA, centred"] = (fl_c.astype(np.float32), "288flip")
    base_c = head(a, centre=True)
    for w in (0.3, 0.5):
        v[f"224 centred + s112+s192 c (w={w})"] = (
            combine([(base_c, 1), (block(a, "r224_s112_avg"), w), (block(a, "r224_s192_avg"), w)]),
            "stages",
        )
        v[f"288 flip centred + s112+s192@288 c (w={w})"] = (
            combine([(fl_c, 1), (block(a, "r288_s112_avg"), w), (block(a, "r288_s192_avg"), w)]),
            "288flip",
        )
    f224 = l2(l2(a["r224_head_avg"]) + l2(a["r224_flip_head_avg"]))
    v["224 flip centred"] = (l2(f224 - f224.mean(0)).astype(np.float32), "flip")
    # Centring loses the mean direction, which the ridge prior (no intercept) and the
    # similarity weights (max(sim, 0)) rely on; a constant extra block gives it back while
    # keeping the centred ranking of neighbours (cos' = (cos + b^2) / (1 + b^2)).
    ones = np.ones((len(fl), 1))
    for b in (0.5, 1.0):
        v[f"288 flip centred + const (b={b})"] = (combine([(fl_c, 1), (ones, b)]), "288flip")
        v[f"224 centred + const (b={b})"] = (combine([(base_c, 1), (ones, b)]), "base")
    for dim, power in ((256, 0.5), (512, 0.5), (1280, 0.25)):
        v[f"224 PCA-whiten {dim}-d (eig^-{power})"] = (whiten(head(a), dim, power), "base")
        v[f"288 flip PCA-whiten {dim}-d (eig^-{power})"] = (whiten(fl, dim, power), "288flip")
    return v


def whiten(x: np.ndarray, dim: int, power: float) -> np.ndarray:
    """Centre, project on the top ``dim`` principal axes, scale each by eigenvalue^-power
    (fit on all 3,300 images: unsupervised, the model would store the projection)."""
    c = x - x.mean(0)
    _, sv, vt = np.linalg.svd(c, full_matrices=False)
    eig = sv[:dim] ** 2 / len(c)
    return l2((c @ vt[:dim].T) / eig**power).astype(np.float32)


# ------------------------------------------------------------------------- same account
def same_account_pairs(posts, rows, splits):
    """Per split: (training image rows, [(test row, row of the training post with the most
    similar tag list)]) for test posts whose best tag Jaccard exceeds 0.5."""
    out = []
    for split in splits:
        train = [i for i in split.train if rows[i] >= 0 and len(posts[i].hashtags) >= 2]
        bank = np.unique([rows[i] for i in split.train if rows[i] >= 0])
        tagsets = [frozenset(posts[i].hashtags) for i in train]
        pairs = []
        for t in split.test:
            tags = frozenset(posts[t].hashtags)
            best, j = max((len(tags & s) / len(tags | s), k) for k, s in enumerate(tagsets))
            if best > 0.5:
                pairs.append((rows[t], rows[train[j]]))
        out.append((bank, pairs))
    return out


def same_account_ranks(pairs_by_split, feats) -> np.ndarray:
    """Rank (1 = nearest) of that training post among the split's training images."""
    ranks = []
    for bank, pairs in pairs_by_split:
        q = feats[[p[0] for p in pairs]] @ feats[bank].T
        target = np.sum(feats[[p[0] for p in pairs]] * feats[[p[1] for p in pairs]], axis=1)
        ranks.extend(1 + (q > target[:, None] + 1e-7).sum(axis=1))
    return np.array(ranks)


# --------------------------------------------------------------------------------- cost
def costs(sample: list[Path], repeats: int = 3) -> dict[str, float]:
    """p50 ms per single image (resize + network + pooling/colour), by cost group."""
    tf, ref, maps, names = lite0_any_size()
    head_only = {s: pooled_fn(tf, maps, names, False, stages=False) for s in (224, 288, 320)}
    full224 = pooled_fn(tf, maps, names, False)
    opened = [images.open_image(p) for p in sample]

    def base(img):
        ref.embed(images.to_model_input(img, 224)[None])

    def flip(img):
        x = images.to_model_input(img, 224)
        ref.embed(np.stack([x, x[:, ::-1]]))

    def at(size, flipped=False):
        def run(img):
            x = images.to_model_input(img, size)
            batch = np.stack([x, x[:, ::-1]]) if flipped else x[None]
            head_only[size](batch)["head_avg"].numpy()

        return run

    def stages(img):
        x = images.to_model_input(img, 224)
        {k: t.numpy() for k, t in full224(x[None]).items()}

    def colour(img):
        x = images.to_model_input(img, 224)
        ref.embed(x[None])
        colour_stats(x)

    groups = {
        "base": base,
        "flip": flip,
        "288": at(288),
        "320": at(320),
        "288flip": at(288, True),
        "stages": stages,
        "colour": colour,
    }
    for fn in groups.values():  # trace + warm up
        fn(opened[0])
        fn(opened[1])
    times: dict[str, list[float]] = {g: [] for g in groups}
    for _ in range(repeats):
        for img in opened:
            for g, fn in groups.items():  # interleaved: the machine's load hits all alike
                t0 = time.perf_counter()
                fn(img)
                times[g].append((time.perf_counter() - t0) * 1000)
    return {g: float(np.median(t)) for g, t in times.items()}


# --------------------------------------------------------------------------------- main
def main() -> None:
    t0 = time.perf_counter()
    config = BuildConfig()
    ds = load_dataset(DATA)
    feats = dataset_features(ds, config)
    posts, rows = ds.posts, feats.image_rows
    paths = [ds.image_path(p) for p in posts if p.image]
    assert len(paths) == feats.features.shape[0] and not feats.problems
    keys = image_keys(ds, posts, rows)
    splits = stratified_splits(posts, rows, 5, 0.2, 0, keys)
    a = extract(paths)
    agree = float(np.min(np.sum(l2(a["ref_embed"]) * feats.features, axis=1)))
    mine = float(np.min(np.sum(l2(a["r224_head_avg"]) * feats.features, axis=1)))
    print(
        f"features ready ({time.perf_counter() - t0:.0f}s); min cosine to the project's "
        f"cached features: backbone.embed {agree:.5f}, any-size rebuild {mine:.5f}"
    )

    pairs = same_account_pairs(posts, rows, splits)
    method = config.method
    cand = [Candidate(method, method)]
    results = []

    def run(name, x, group):
        r = evaluate(posts, x, rows, config, candidates=cand, splits=splits, keys=keys, n_sweep=())
        ranks = same_account_ranks(pairs, x)
        row = (
            name,
            group,
            *(
                f(method, m)
                for m in ("recall@10", "beyond_recall@10", "hit@10")
                for f in (r.mean, r.std)
            ),
            float(np.median(ranks)),
            float(np.mean(ranks <= 5)),
            len(ranks),
        )
        results.append(row)
        print(
            f"{name:<46} R@10 {row[2]:.4f}±{row[3]:.4f}  beyond {row[4]:.4f}±{row[5]:.4f}"
            f"  hit {row[6]:.4f}±{row[7]:.4f}  same-acct rank med {row[8]:.0f}"
            f" (in top5 {row[9]:.1%}, n={row[10]})",
            flush=True,
        )

    only = sys.argv[1:]  # optional substrings: run only the variants whose name has one
    todo = {
        "project features (cache)": (feats.features, "base"),
        **variants(a),
        **combo_variants(a, []),
    }
    for name, (x, group) in todo.items():
        if not only or any(o in name for o in only) or name.startswith("baseline"):
            run(name, x, group)

    print("\nmeasuring cost per image (batch 1, p50 ms) ...", flush=True)
    sample = paths[:: max(1, len(paths) // 20)][:20]
    cost = costs(sample)
    print("  " + ", ".join(f"{g}: {ms:.1f}" for g, ms in cost.items()))

    base_r = next(r[2] for r in results if r[0].startswith("baseline"))
    print(
        "\n| variant | recall@10 | beyond_recall@10 | hit@10 | Δ recall | "
        "same-acct median rank (top-5 share) | extra ms/image |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, group, r, rs, b, bs, h, hs, med, top5, _n in results:
        extra = cost[group] - cost["base"]
        print(
            f"| {name} | {r:.4f} ± {rs:.4f} | {b:.4f} ± {bs:.4f} | {h:.4f} ± {hs:.4f} | "
            f"{r - base_r:+.4f} | {med:.0f} ({top5:.1%}) | {extra:+.1f} |"
        )
    print(
        f"\nbaseline cost {cost['base']:.1f} ms/image p50 (resize + embed); "
        f"total {time.perf_counter() - t0:.0f}s"
    )


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
