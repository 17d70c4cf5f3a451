# corpus-nlp: `make demo` sets up and annotates the bundled sample; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# no model hub at run time: pipelines and weights come from installed packages
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup demo test eval

setup: $(VENV)/.installed

# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build on a CPU machine
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/corpus-nlp assemble-default
	touch $@

demo: setup
	rm -rf out/demo
	$(BIN)/corpus-nlp annotate data/ewt_sample.parquet out/demo
	$(BIN)/python -c "import polars as pl; \
	print(pl.scan_delta('out/demo/entities').group_by('label').agg(pl.len().alias('n'), pl.col('text').mode().first().alias('most_common')).sort('n', descending=True).head(8).collect())"

test: setup
	$(BIN)/python -m pytest

# the default pipeline on the gold_dev documents it never saw in training (its test split), with
# en_core_web_sm's row on the same documents beside it
eval: setup
	$(BIN)/corpus-nlp evaluate ../shared/data/ewt/gold_dev.jsonl --heldout
