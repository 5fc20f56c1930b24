"""The ImageNet class -> hashtag table and the content term built on it."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.errors import BackboneError, ConfigError
from recommender.vision import content

TABLE = content.class_hashtags()


# -- the packaged table --------------------------------------------------------------------------


def test_table_has_every_class_in_output_order():
    assert len(TABLE.names) == len(TABLE.hashtags) == content.N_CLASSES
    # spot checks against Keras' imagenet_class_index.json order (the networks' outputs)
    assert TABLE.names[0] == "tench"
    assert TABLE.names[281] == "tabby"
    assert TABLE.names[933] == "cheeseburger"
    assert TABLE.names[967] == "espresso"
    assert TABLE.names[999] == "toilet tissue"


@pytest.mark.parametrize(
    ("cls", "tags"),
    [
        (933, ("burger", "cheeseburger")),
        (967, ("coffee", "espresso")),
        (281, ("cat",)),
        (207, ("dog", "goldenretriever")),
    ],
    ids=["cheeseburger", "espresso", "tabby", "golden-retriever"],
)
def test_the_issue_examples(cls, tags):
    assert TABLE.hashtags[cls] == tags


@pytest.mark.parametrize(
    ("what", "classes", "tag"),
    [
        ("dog breeds", range(151, 269), "dog"),
        ("domestic cats", range(281, 286), "cat"),
        ("snakes", range(52, 69), "snake"),
        ("butterflies", range(321, 327), "butterfly"),
    ],
)
def test_whole_groups_share_their_general_hashtag(what, classes, tag):
    missing = [TABLE.names[c] for c in classes if tag not in TABLE.hashtags[c]]
    assert not missing, f"{what} without #{tag}: {missing}"


def test_coverage_of_food_animals_vehicles_buildings_scenery():
    mapped = {c for c, tags in enumerate(TABLE.hashtags) if tags}
    assert len(mapped) >= 600
    animals = set(range(0, 398))
    food = set(range(923, 970))
    scenery = set(range(970, 981))
    vehicles = {
        403,
        404,
        407,
        436,
        466,
        468,
        511,
        555,
        609,
        627,
        656,
        661,
        665,
        670,
        671,
        717,
        751,
        757,
        779,
        817,
        820,
        829,
        864,
        866,
        867,
    }
    buildings = {
        406,
        425,
        437,
        442,
        483,
        497,
        498,
        538,
        663,
        668,
        698,
        762,
        821,
        832,
        839,
        873,
        888,
    }
    for group, classes, share in (
        ("animals", animals, 0.95),
        ("food", food, 1.0),
        ("scenery", scenery, 1.0),
        ("vehicles", vehicles, 1.0),
        ("buildings", buildings, 1.0),
    ):
        assert len(classes & mapped) >= share * len(classes), group


# -- reading a table -------------------------------------------------------------------------------


def _write(tmp_path, rows, header="class,name,hashtags"):
    path = tmp_path / "table.csv"
    body = [f"{i},class {i}," for i in range(content.N_CLASSES)]
    for i, row in rows.items():
        body[i] = row
    path.write_text("# a comment\n" + header + "\n" + "\n".join(body) + "\n")
    return path


def test_reads_a_valid_table(tmp_path):
    table = content.read_class_hashtags(_write(tmp_path, {3: "3,three,a b3"}))
    assert table.names[3] == "three" and table.hashtags[3] == ("a", "b3")
    assert table.mapped == 1


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ({5: "6,out of order,x"}, "line 8: expected class 5"),
        ({5: "5,,x"}, "class 5 has no name"),
        ({5: "5,five,a b c d"}, "1-3 distinct hashtags"),
        ({5: "5,five,a a"}, "1-3 distinct hashtags"),
        ({5: "5,five,#Burger"}, "lowercase letters and digits"),
    ],
    ids=["order", "no-name", "four-tags", "repeated", "not-a-tag"],
)
def test_malformed_tables_name_the_line(tmp_path, rows, match):
    with pytest.raises(BackboneError, match=match):
        content.read_class_hashtags(_write(tmp_path, rows))


def test_bad_header_short_table_and_missing_file(tmp_path):
    with pytest.raises(BackboneError, match="header"):
        content.read_class_hashtags(_write(tmp_path, {}, header="id,name,tags"))
    path = tmp_path / "short.csv"
    path.write_text("class,name,hashtags\n0,tench,fish\n")
    with pytest.raises(BackboneError, match="1 classes"):
        content.read_class_hashtags(path)
    with pytest.raises(BackboneError, match="cannot read"):
        content.read_class_hashtags(tmp_path / "missing.csv")


# -- top classes ---------------------------------------------------------------------------------


def _probs(pairs: dict[int, float]) -> np.ndarray:
    p = np.zeros(content.N_CLASSES, dtype=np.float32)
    for c, v in pairs.items():
        p[c] = v
    return p


def test_top_classes_keep_top_and_dense_agree():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(content.N_CLASSES), size=4).astype(np.float32)
    ids, top = content.top_classes(probs)
    assert ids.shape == top.shape == (4, content.TOP_CLASSES) and ids.dtype == np.int16
    assert (np.diff(top, axis=1) <= 0).all()
    dense = content.dense_classes(ids, top)
    for row in range(4):
        np.testing.assert_array_equal(dense[row], content.keep_top(probs[row]))
        assert np.count_nonzero(dense[row]) == content.TOP_CLASSES
        np.testing.assert_allclose(dense[row][ids[row]], probs[row][ids[row]])


def test_shapes_are_checked():
    with pytest.raises(ConfigError, match="1000"):
        content.top_classes(np.zeros((2, 10)))
    with pytest.raises(ConfigError, match="1000"):
        content.keep_top(np.zeros(10))


def test_seen_names_the_top_classes():
    p = _probs({933: 0.83, 934: 0.1, 5: 0.04, 6: 0.03})
    assert [(n, round(v, 2)) for n, v in content.seen(p)] == [
        ("cheeseburger", 0.83),
        ("hotdog", 0.1),
    ]
    assert content.seen(None) == []
    # the best class is named even when unsure
    assert [n for n, _ in content.seen(np.full(content.N_CLASSES, 1e-3))] == ["tench"]


def test_class_tag_matrix_maps_known_hashtags_only():
    tags = ["food", "burger", "dog", "goldenretriever", "cat"]
    matrix = content.class_tag_matrix(tags)
    assert matrix.shape == (content.N_CLASSES, len(tags))
    row = lambda c: {tags[j] for j in matrix[c].indices}  # noqa: E731
    assert row(933) == {"burger"}  # "cheeseburger" is not among the model's hashtags
    assert row(207) == {"dog", "goldenretriever"}
    assert row(281) == {"cat"}
    assert row(999) == set()
