"""What every data set layout must do alike: one contract, run on each registered format.

The same small collection of posts (a carousel, a post without image, unicode hashtags) is
written in each layout by the format's own ``write_sample`` and must load as the same posts:
the same hashtags with the same image bytes. A new format module is picked up here without
touching this file.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from recommender.data.datasets import FORMATS, format_names, layouts_table, load_dataset
from recommender.data.formats import SamplePost, registry
from recommender.data.hashtags import normalize_tags
from recommender.vision import images

README = Path(__file__).resolve().parent.parent / "README.md"


def photo(seed: int, size=(64, 48)) -> bytes:
    """A real JPEG whose pixels differ from every other seed's."""
    img = Image.new("RGB", size, ((seed * 70) % 256, (seed * 130) % 256, (seed * 190) % 256))
    img.putpixel((seed % size[0], 0), (255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


SAMPLE = (
    SamplePost("brunch", (photo(1),), ("food", "Brunch", "SundayBrunch"), "Sunday brunch"),
    SamplePost("trip", (photo(2), photo(3), photo(4)), ("travel", "café", "東京"), "Three days"),
    SamplePost("quote", (), ("travel", "quotes"), "Words only"),
    SamplePost("dog", (photo(5),), ("dogsofinstagram", "Köln", "नमस्ते"), "Guten Tag"),
)


def expected() -> list[tuple]:
    return sorted(
        (
            tuple(sorted(normalize_tags(post.hashtags))),
            hashlib.sha256(post.images[0]).hexdigest() if post.images else None,
        )
        for post in SAMPLE
    )


def loaded(dataset) -> list[tuple]:
    out = []
    for post in dataset.posts:
        digest = None
        if post.image is not None:
            digest = images.content_hash(images.read_bytes(dataset.image_path(post)))
        out.append((tuple(sorted(post.hashtags)), digest))
    return sorted(out)


@pytest.fixture(params=format_names())
def written(request, tmp_path):
    fmt = registry()[request.param]
    folder = tmp_path / fmt.name
    folder.mkdir()
    return fmt, fmt.write_sample(folder, SAMPLE)


def test_the_same_posts_in_every_layout(written):
    fmt, path = written
    dataset = load_dataset(path)
    assert dataset.format == fmt.name  # detected as itself, not as another layout
    assert loaded(dataset) == expected()
    c = dataset.report.counts
    assert (c["posts"], c["posts_with_image"], c["posts_without_image"]) == (4, 3, 1)
    assert len({p.post_id for p in dataset.posts}) == 4


def test_named_format_loads_the_same(written):
    fmt, path = written
    assert loaded(load_dataset(path, fmt.name)) == expected()


def test_every_image_decodes_and_the_fingerprint_is_stable(written):
    _fmt, path = written
    dataset = load_dataset(path)
    for post in dataset.posts:
        if post.image is not None:
            assert images.open_image(dataset.image_path(post)).size == (64, 48)
    again = load_dataset(path).fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", again) and again == dataset.fingerprint()


def test_other_layouts_do_not_claim_it(written):
    fmt, path = written
    claimed = [other.name for other in registry().values() if other.detect(path)]
    assert claimed[0] == fmt.name


def test_cli_choices_come_from_the_registry():
    from recommender.cli import build_parser

    parser = build_parser()
    for command in ("build", "evaluate"):
        sub = parser._subparsers._group_actions[0].choices[command]
        action = next(a for a in sub._actions if a.dest == "format")
        assert tuple(action.choices) == FORMATS == ("auto", *registry())


def test_readme_table_is_the_registry():
    lines = README.read_text(encoding="utf-8").splitlines()
    start = lines.index(layouts_table().splitlines()[0])
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    assert "\n".join(lines[start:end]) == layouts_table(), (
        "README.md's table of layouts is out of date; replace it with the output of "
        "python -c 'from recommender.data.datasets import layouts_table; print(layouts_table())'"
    )
    assert all(f"`{name}`" in layouts_table() for name in format_names())


def test_each_module_of_the_package_is_one_layout():
    """Adding a layout is adding one file: every module in recommender/data/formats/ is found."""
    import recommender.data.formats

    folder = Path(recommender.data.formats.__file__).parent
    modules = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_")}
    found = {f.load.__module__.rsplit(".", 1)[1] for f in registry().values()}
    assert found == modules and len(found) == len(registry())
