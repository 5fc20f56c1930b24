"""The demo page: drop a photo, get the hashtags its most similar training posts used.

Run it with ``streamlit run app.py`` (or ``make run``). The model comes from
``$HASHTAG_MODEL`` (default ``models/demo``); without one the page offers to build the demo
model from ``$HASHTAG_DATASET``. This file only shows things: every computation is in the
``recommender`` package, and every error it raises on purpose is shown as a message.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import streamlit as st

from recommender import HashtagRecommender, ModelError, RecommenderError
from recommender.data.hashtags import load_blocklist
from recommender.paths import default_dataset, default_model
from recommender.query.breadth import BALANCED_POOL
from recommender.store.model_io import model_version, output_problem
from recommender.ui import preload
from recommender.ui import presentation as pres
from recommender.ui import uploads as limits
from recommender.vision.images import content_hash

st.set_page_config(
    page_title="Hashtag recommender",
    page_icon=str(pres.PAGE_ICON),  # served by the page itself: nothing asks an outside host
    layout="wide",
    initial_sidebar_state="auto",  # collapsed on a narrow screen, where it covers the page
)

BUILD_CLI = "python -m recommender build DATA --out MODEL"
EVALUATE_CLI = "python -m recommender \\\n  build DATA \\\n  --out MODEL \\\n  --evaluate 5"
THUMB_SIDE = 96  # pixels: the photos in the batch table


# ------------------------------------------------------------------------ cached loaders
@st.cache_resource(show_spinner="Loading the model…", max_entries=1)
def load_model(path: str, version: str) -> HashtagRecommender:
    """The model, loaded once per server with its feature extractor compiled and warmed.

    Keyed by the model's version (read from its manifest on every run), so a model rebuilt
    at the same path is loaded again; ``max_entries=1`` keeps only the newest in memory.
    ``python -m recommender serve`` (``make run``) has loaded it when the server started.
    """
    return preload.take(path, version)


@st.cache_resource(show_spinner=False)
def keep_tensorflow_kernels() -> bool:
    """Stop Streamlit from resetting Keras after every script run; True if it was stopped.

    When keras is imported, Streamlit calls ``keras.backend.clear_session()`` after each run
    (streamlit/streamlit#939, for apps that rebuild Keras models on every run). That also
    clears TensorFlow's kernel cache, so the next photo took 0.3-0.5 s instead of 0.03 s to
    embed, longer with several visitors. Our backbone is built once per server and only run.
    """
    from streamlit.runtime.scriptrunner import script_runner

    if not callable(getattr(script_runner, "_clean_problem_modules", None)):
        return False  # a Streamlit without the reset: nothing to do
    script_runner._clean_problem_modules = pres.do_nothing
    return True


@st.cache_resource(show_spinner=False)
def blocklist() -> frozenset[str]:
    return load_blocklist()


@st.cache_resource(show_spinner=False)
def upload_limits() -> bool:
    """Bound the files and bytes each session holds, and free closed sessions' uploads."""
    return limits.install_limits()


@st.cache_resource(show_spinner=False)
def build_lock() -> threading.Lock:
    """One build at a time per server, whichever session asks."""
    return threading.Lock()


@st.cache_resource(show_spinner=False)
def feature_memo() -> pres.Memo:
    """Features of the photos seen lately, by model version and content hash, for every
    session: moving a slider or uploading the same photo again never recomputes them, and
    a rebuilt model does."""
    return pres.Memo(max_items=512)


@st.cache_data(max_entries=256, show_spinner=False)
def prepared_photo(digest: str, _data: bytes, size: int) -> limits.PreparedPhoto:
    """The photo decoded once: model input, preview and thumbnail (or why not)."""
    return limits.prepare_photo(_data, size)


def features_ui(
    rec: HashtagRecommender,
    version: str,
    photos: list[tuple[str, bytes, str]],
    prepared: list[limits.PreparedPhoto],
) -> list[tuple[np.ndarray | None, np.ndarray | None, str]]:
    """(features, ImageNet class probabilities or None, "") of each photo, from one forward
    pass, or (None, None, why it cannot be used); new photos are embedded in batches with a
    progress bar."""
    memo = feature_memo()
    found = {i: memo.get((version, digest)) for i, (_, _, digest) in enumerate(photos)}
    for i, ready in enumerate(prepared):
        if found[i] is None and ready.error:
            found[i] = (None, None, ready.error)
    todo = [i for i, hit in found.items() if hit is None]
    if todo:
        bar = st.progress(0.0, text="Looking at the photo…" if len(todo) == 1 else None)

        def progress(done: int, total: int) -> None:
            if total > 1:
                bar.progress(done / total, text=f"Looking at the photos: {done} of {total}")

        features, classes, problems = rec.embed_many(
            [prepared[i].model_input() for i in todo], progress=progress
        )
        for j, i in enumerate(todo):
            if problems[j]:
                found[i] = (None, None, problems[j])
            else:
                found[i] = (features[j], None if classes is None else classes[j], "")
            memo.put((version, photos[i][2]), found[i])
        bar.empty()
    return [found[i] for i in range(len(photos))]


# ------------------------------------------------------------------------------ helpers
def link_ui(examples: list[str]) -> None:
    """Seed the view from the link once per session: ``?example=food&n=5&k=10``."""
    if st.session_state.get("link_read"):
        return
    st.session_state["link_read"] = True
    params = st.query_params.to_dict()
    view = pres.view_from_query(params, examples)
    for note in pres.query_notes(params, examples):
        st.toast(pres.escape_markdown(note), icon=":material/link_off:")
    st.session_state.setdefault("n", view.get("n", pres.N_DEFAULT))
    st.session_state.setdefault("k", view.get("k", pres.K_DEFAULT))
    if "example" in view:
        st.session_state["example"] = view["example"]


def settings_ui(can_block: bool) -> tuple[int, int, bool, bool]:
    """The sidebar controls: (neighbours n, hashtags k, hide spam, balanced five)."""
    st.sidebar.header("Settings")
    n = st.sidebar.slider(
        "Nearest neighbours (n)",
        *pres.N_RANGE,
        key="n",
        help="How many of the most similar training photos vote for hashtags.",
    )
    k = st.sidebar.slider(
        "Hashtags (k)", *pres.K_RANGE, key="k", help="How many hashtags to suggest."
    )
    hide = st.sidebar.toggle(
        "Hide spam / engagement-bait hashtags",
        value=True,
        disabled=not can_block,
        help="Leaves out tags such as #like4like and #followforfollow "
        "(recommender/assets/blocklist.txt).",
    )
    balanced_mix = st.sidebar.toggle(
        "Balanced 5 to paste",
        value=pres.BALANCED_DEFAULT,
        help="Pick the 5 to paste as a mix: at most two broad hashtags (crowded), the rest "
        f"more specific, from the best {BALANCED_POOL}. Off: simply the best 5.",
    )
    return n, k, hide and can_block, balanced_mix


def about_model_ui(path: Path, rec: HashtagRecommender) -> None:
    info = rec.info()
    st.sidebar.header("About this model")
    lines = [
        f"- **{label}:** {pres.escape_markdown(value)}" for label, value in pres.model_facts(info)
    ]
    st.sidebar.markdown("\n".join(lines))
    st.sidebar.caption(f"Folder: {pres.escape_markdown(path)}")
    evaluation = pres.evaluation_summary(info)
    if evaluation is None:
        st.sidebar.caption(
            "This model has no evaluation. Build it with `--evaluate SPLITS` to measure how "
            "often it recovers held-out hashtags, against suggesting the most popular ones:"
        )
        st.sidebar.code(EVALUATE_CLI, language="bash")
        return
    for line in pres.evaluation_words(evaluation):
        st.sidebar.markdown(line)
    held_out = []
    if evaluation["splits"]:
        held_out.append(f"{evaluation['splits']} random splits")
    if evaluation["test_posts"]:
        held_out.append(f"{evaluation['test_posts']:,} held-out posts each")
    if held_out:
        st.sidebar.caption("Measured on posts it never saw: " + ", ".join(held_out) + ".")
    with st.sidebar.expander("Exact figures"):
        st.markdown(
            "\n".join(
                f"- {pres.escape_markdown(name)}: {pres.escape_markdown(value)}"
                for name, value in pres.exact_figures(evaluation)
            )
        )
        st.caption(
            "recall@10: the share of a held-out post's hashtags in the top 10; "
            "off_topic@k: other categories' search tags in the top k that the post does not "
            "carry; own_category_hit@10: photos of categories known only by their search tag "
            "that get it in the top 10."
        )


def no_model_ui(path: Path, error: ModelError) -> None:
    """First run or damaged model: say so, offer to build the demo model or explain the CLI."""
    if path.is_dir():
        st.error(f"The model cannot be used. {pres.escape_markdown(error)}")
    else:
        st.info(
            f"There is no model yet at {pres.escape_markdown(path)}. Build the demo model "
            "from the example data set below, or one from your own posts."
        )
    dataset = default_dataset()
    left, right = st.columns(2, gap="large")
    with left, st.container(border=True):
        st.subheader("Build the demo model")
        refused = output_problem(path)
        if refused:
            st.warning(f"The page will not build here: {pres.escape_markdown(refused)}")
        elif dataset.is_dir():
            st.markdown(
                f"From the data set in {pres.escape_markdown(dataset)}: this extracts the "
                "features of every photo, measures the method on held-out posts and trains "
                "the hashtag model, about a minute on a laptop."
            )
            if st.button("Build the demo model", type="primary", icon=":material/build:"):
                build_ui(dataset, path)
        else:
            st.warning(
                f"The demo data set is not at {pres.escape_markdown(dataset)}. Set "
                "`HASHTAG_DATASET` to its folder and reload this page."
            )
    with right, st.container(border=True):
        st.subheader("Use your own posts")
        st.markdown(
            "Point the builder at a folder of posts (the instagram-2019 layout, an Instaloader "
            "download, or a `manifest.jsonl`), then start the page on the model it writes:"
        )
        st.code(f"{BUILD_CLI}\nHASHTAG_MODEL=MODEL streamlit run app.py", language="bash")


def build_ui(dataset: Path, path: Path) -> None:
    from recommender.build import build_model
    from recommender.evaluation import DEFAULT_SPLITS

    bar = st.progress(0.0, text="Waiting for any other build to finish…")

    def progress(stage: str, done: int, total: int) -> None:
        fraction, text = pres.build_progress(stage, done, total)
        bar.progress(fraction, text=text)

    with build_lock():
        try:
            load_model(str(path), model_version(path))  # another session built it meanwhile?
        except RecommenderError:
            bar.progress(0.0, text="Reading the data set…")
            try:
                build_model(dataset, path, progress=progress, evaluate=DEFAULT_SPLITS)
            except RecommenderError as exc:
                bar.empty()
                st.error(f"The build failed. {pres.escape_markdown(exc)}")
                return
    st.rerun()


def photo_ui(examples: list[Path]) -> list[tuple[str, bytes]]:
    """The upload box and the example photos; returns (name, bytes) of the chosen photos."""
    uploader_key = f"upload-{st.session_state.get('uploads_cleared', 0)}"
    uploads = st.file_uploader(
        "Drop photos",
        type=list(pres.PHOTO_TYPES),
        accept_multiple_files=True,
        key=uploader_key,
        on_change=_forget_example,
        help="JPEG, PNG, WebP or HEIC. Several photos give a table with the hashtags of each, "
        "and a CSV to download. " + limits.limits_line(),
    )
    st.caption(limits.limits_line())
    if examples:
        st.pills(
            "…or try an example photo",
            [p.stem for p in examples],
            format_func=pres.escape_markdown,
            key="example",
            on_change=_forget_upload,
        )
    if uploads:
        return [(upload.name, upload.getvalue()) for upload in uploads]
    chosen = st.session_state.get("example")
    return [(p.name, p.read_bytes()) for p in examples if p.stem == chosen]


def _forget_example() -> None:
    st.session_state["example"] = None


def _forget_upload() -> None:
    # A file uploader cannot be emptied from code; a fresh key gives an empty one.
    st.session_state["uploads_cleared"] = st.session_state.get("uploads_cleared", 0) + 1


def hashtags_ui(result, top, breadth) -> None:
    tags = result.hashtags
    st.subheader("Suggested hashtags")
    if not tags:
        st.warning("No hashtags to suggest: every candidate was blocked. Turn off the filter.")
        return
    st.markdown(
        f"**{'Balanced ' if top != tags[: len(top)] else 'Top '}{len(top)}** to paste "
        f"(Instagram takes at most {pres.TO_PASTE}):"
    )
    st.code(pres.hashtag_line(t.tag for t in top), language=None, wrap_lines=True)
    if len(tags) > len(top) or top != tags[: len(top)]:
        st.markdown(f"**All {len(tags)}**, best first (those to paste are highlighted below)")
        st.code(pres.hashtag_line(result.tags), language=None, wrap_lines=True)
    st.markdown(pres.tiered_line(tags, marked=[t.tag for t in top]))
    st.caption(pres.breadth_legend(breadth))


def compare_ui(rec: HashtagRecommender, features, classes, n: int, blocked) -> None:
    """This model's top 10 beside the original project's, shared hashtags marked."""
    comparison = pres.compare(rec, features, classes, n, blocked)
    st.subheader("Against the original method")
    if comparison.original is None:
        st.info(pres.escape_markdown(comparison.problem))
        return
    st.caption(
        f"The same photo; **bold** hashtags are in both lists ({len(comparison.shared)} of "
        f"{pres.COMPARED}). The original had no block list, so its list has none."
    )
    info = rec.info()
    columns = st.columns(2, gap="large")
    for col, ranked, title in (
        (columns[0], comparison.default, f"This model ({n} neighbours)"),
        (
            columns[1],
            comparison.original,
            "The original project (5 neighbours, the mean of their ALS factors)",
        ),
    ):
        with col, st.container(border=True):
            st.markdown(f"**{pres.escape_markdown(title)}**")
            recall = pres.method_recall(info, ranked.method, pres.COMPARED)
            if recall is not None:
                st.metric(
                    f"recall@{pres.COMPARED}",
                    f"{recall:.3f}",
                    help="Share of held-out posts' hashtags found in the top "
                    f"{pres.COMPARED}, for this list's method (this model's evaluation).",
                )
            st.markdown(pres.ranked_list(ranked.hashtags, comparison.shared))


def charts_ui(result, digest: str) -> None:
    left, right = st.columns(2, gap="large")
    with left:
        st.subheader("Scores")
        st.plotly_chart(
            pres.score_figure(result.hashtags), config={"displayModeBar": False}, key="scores"
        )
    with right:
        st.subheader("Where a score comes from")
        choice = st.selectbox(
            "Hashtag",
            range(len(result.hashtags)),
            format_func=lambda i: f"#{result.hashtags[i].tag}",
            key=f"explain-{digest}",  # a new photo starts at its best hashtag
        )
        tag = result.hashtags[choice or 0]
        st.plotly_chart(
            pres.contribution_figure(tag, result.neighbours),
            config={"displayModeBar": False},
            key="contributions",
        )
        st.caption(
            "What each nearest photo (rank, cosine similarity) added to the score"
            + (
                f"; *{pres.PRIOR_LABEL}* is what the model reads from your photo directly"
                if tag.prior
                else ""
            )
            + (
                f"; *{pres.CONTENT_LABEL}* is what the ImageNet classes it names stand for."
                if tag.content
                else "."
            )
        )


def neighbours_ui(rec: HashtagRecommender, result, blocked) -> None:
    st.subheader(f"The {len(result.neighbours)} most similar training photos")
    st.caption(
        "Their hashtags vote for the suggestions, each with its weight: the more similar "
        "a photo, the more its vote counts (the weights add up to 100%)."
    )
    cards = [
        pres.NeighbourCard(
            rank,
            rec.thumbnail(nb.index),
            nb.similarity,
            nb.weight,
            pres.neighbour_tags(nb.hashtags, blocked),
        )
        for rank, nb in enumerate(result.neighbours, 1)
    ]
    st.html(pres.neighbour_grid_html(cards))


def batch_ui(names: list[str], rows: list[pres.PhotoRow], previews: list[bytes]) -> int:
    """The table of a batch, one row per photo, and its CSV; returns the selected row (the
    last, newest, when none is)."""
    st.subheader(f"{len(rows)} photos")
    event = st.dataframe(
        pres.batch_table(names, rows, previews),
        column_config={
            "photo": st.column_config.ImageColumn("photo", width=64),
            "name": st.column_config.TextColumn("name", width=130),
            "to paste": st.column_config.TextColumn("to paste", width=320),
            "more": st.column_config.TextColumn("more hashtags (or why not)", width=400),
        },
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key="batch_table",
        row_height=56,
        placeholder="",
    )
    st.download_button(
        "Download CSV",
        pres.batch_csv(rows),
        file_name="hashtags.csv",
        mime="text/csv",
        icon=":material/download:",
        help="One row per photo: photo, top5, hashtags (written #a #b), error.",
    )
    selected = list(event.selection.rows) if event is not None else []
    if selected and 0 <= selected[0] < len(rows):
        st.divider()
        return selected[0]
    st.caption("Select a row to see where its hashtags come from; the newest photo is shown.")
    st.divider()
    return len(rows) - 1


def detail_ui(rec, name, preview, digest, result, ranked_ms, query, n, blocked, top) -> None:
    """Everything about one photo: its hashtags, the charts, its neighbours."""
    # The hashtags first: on a phone the columns stack, and the 5 to paste lead the screen.
    tags_col, photo_col = st.columns([2, 1], gap="large")
    with tags_col:
        hashtags_ui(result, top, rec.breadth)
    with photo_col:
        if preview:
            st.image(preview, width="stretch")
        st.caption(
            f"{pres.escape_markdown(name)} · {len(result.neighbours)} neighbours · "
            f"{pres.escape_markdown(result.method)} scoring · ranked in {ranked_ms:.0f} ms"
        )
        if result.seen:
            st.caption(pres.escape_markdown(pres.network_sees(result.seen)))
        if result.search_tags:
            st.caption(pres.escape_markdown(pres.search_tags_line(result.search_tags)))
    if st.toggle(
        "Compare with the original method",
        key="compare",
        help="The original project's algorithm, refitted on these posts when the model was "
        "built (5 neighbours, the mean of their ALS factors, no block list), beside this "
        "model's list for the same photo.",
    ):
        compare_ui(rec, *query, n, blocked)
    if result.hashtags:
        charts_ui(result, digest)
    neighbours_ui(rec, result, blocked)


# ------------------------------------------------------------------------------- layout
def main() -> None:
    """The page, top to bottom.

    A function, not module-level code: Streamlit keeps the functions each run defines (an
    lru_cache in its metrics), and with them that run's globals; as locals, the model and
    the photos of a run are freed when the run ends.
    """
    keep_tensorflow_kernels()
    upload_limits()
    st.title("Hashtag recommender")

    model_path = default_model()
    try:
        version = model_version(model_path)
        rec = load_model(str(model_path), version)
    except ModelError as exc:
        st.sidebar.header("About this model")
        st.sidebar.caption("No model is loaded.")
        no_model_ui(model_path, exc)
        st.stop()
    except RecommenderError as exc:
        st.error(f"The model cannot be loaded. {pres.escape_markdown(exc)}")
        st.stop()
    if st.session_state.get("model_version") not in (None, version):
        st.toast(
            f"The model was rebuilt ({rec.info().get('created')}) and the page reloaded it.",
            icon=":material/refresh:",
        )
    st.session_state["model_version"] = version

    try:
        blocked = blocklist()
    except RecommenderError as exc:
        blocked = frozenset()
        st.sidebar.warning(pres.escape_markdown(exc))
    examples = pres.example_photos(default_dataset() / "test")
    link_ui([p.stem for p in examples])
    n, k, hide_spam, balanced_mix = settings_ui(bool(blocked))
    about_model_ui(model_path, rec)

    counts = rec.info().get("counts", {})
    st.caption(
        f"Drop photos: the page finds the most similar of {counts.get('images', 0):,} Instagram "
        "photos and suggests the hashtags their posts used."
    )

    photos = photo_ui(examples)
    # The link always shows this view: the example photo, n and k.
    st.query_params.from_dict(pres.view_to_query(st.session_state.get("example"), n, k))
    if not photos:
        st.info("Drop photos above, or pick an example, to see hashtag suggestions.")
        st.html(preload.browser_preload_html(), unsafe_allow_javascript=True)
        st.stop()

    photos_hashed = [(name, data, content_hash(data)) for name, data in photos]
    size = rec.backbone.input_size
    prepared = [prepared_photo(digest, data, size) for _, data, digest in photos_hashed]
    found = features_ui(rec, version, photos_hashed, prepared)
    use_blocklist = blocked if hide_spam else None
    pool = max(k, BALANCED_POOL) if balanced_mix else k
    results, rows, timings = [], [], []
    for (name, _data, _digest), (features, classes, problem) in zip(
        photos_hashed, found, strict=True
    ):
        ranked = None
        start = time.perf_counter()
        if features is not None:
            try:
                ranked = rec.recommend_features(
                    features, n_neighbours=n, k=pool, blocklist=use_blocklist, classes=classes
                )
            except RecommenderError as exc:
                problem = str(exc)
        timings.append((time.perf_counter() - start) * 1000)
        results.append(ranked)
        rows.append(pres.photo_row(name, ranked, problem, k, balanced_mix))

    chosen = 0
    if len(photos) > 1:
        previews = [p.thumb for p in prepared]
        chosen = batch_ui([name for name, _, _ in photos_hashed], rows, previews)

    name, _, digest = photos_hashed[chosen]
    ranked = results[chosen]
    if ranked is None:
        st.error(f"{pres.escape_markdown(name)}: {pres.escape_markdown(rows[chosen].error)}")
        st.stop()
    detail_ui(
        rec,
        name,
        prepared[chosen].preview,
        digest,
        pres.shown(ranked, k),
        timings[chosen],
        found[chosen][:2],
        n,
        use_blocklist,
        pres.to_paste(ranked.hashtags, balanced_mix),
    )


main()
