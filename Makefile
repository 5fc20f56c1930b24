# The two commands a newcomer needs:  `make run`  and  `make test`.
# Everything installs into .venv from requirements*.txt; nothing is fetched at run time.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HASHTAG_DATASET ?= $(abspath ../shared/datasets/instagram-2019)
HASHTAG_MODEL ?= $(abspath models/demo)
PORT ?= 8501
export HASHTAG_DATASET HASHTAG_MODEL

.PHONY: install install-spark run model test test-fast lint

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# The Spark engine's extra packages (pyspark is large): only `make test` and CI need them.
$(VENV)/.installed-spark: $(VENV)/.installed requirements-spark.txt
	$(PY) -m pip install -q -r requirements-spark.txt
	touch $@

install-spark: $(VENV)/.installed-spark

# Build the demo model once (skipped when a loadable model is already there), evaluated on
# 5 held-out splits so the page shows its recall and the original method's beside it
# (README.md gives the measured time of a first build).
model: install
	$(PY) -m recommender build "$(HASHTAG_DATASET)" --out "$(HASHTAG_MODEL)" --skip-existing \
		--evaluate 5

# serve: the page, with the model loaded and warmed when the server starts (not on the
# first visit); on 127.0.0.1 (HOST=0.0.0.0 to be reached from other machines).
HOST ?= 127.0.0.1
run: model
	$(PY) -m recommender serve --port $(PORT) --address $(HOST)

# Everything: the real data set, a local Spark, a real browser (CI runs this).
test: install-spark
	$(PY) -m pytest -q

# The loop for every edit: no real data set, Spark, browser or TensorFlow network, so the
# tests run on tests/conftest.py's tiny known-answer model (markers: pyproject.toml).
FAST := not dataset and not spark and not browser and not tensorflow
test-fast: install
	$(PY) -m pytest -q -m "$(FAST)"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
