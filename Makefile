# Targets named in the README. `make test` is what CI runs (.ci/run).
VENV   ?= .venv
PY     := $(VENV)/bin/python
# torch/torchvision pinned to the builds this project is tested with.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
# Two workers, a test module each at a time (tests/conftest.py says why); WORKERS=0 runs them in one process.
WORKERS ?= 2
PARALLEL := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS))
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

.PHONY: setup browser warm slides-runtime test test-fast demo lab cache-05 notebooks student assignments grade slides reveal evaluate benchmark environment lint clean

setup: $(VENV)/.installed  ## virtual environment with everything installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

browser:  ## Debian's chromium for the browser tests (never `playwright install`)
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: no chromium; browser tests will be skipped (apt-get install chromium)"; fi; }

warm: setup  ## compile umap's numba code once (~50 s), so notebooks don't each pay it
	$(PY) -c "import umap" 2>/dev/null

test: setup browser warm slides-runtime  ## the whole test suite, notebooks and browser tests included
	GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 $(PY) -m pytest --durations=15 $(PARALLEL)

test-fast: setup  ## unit tests only
	$(PY) -m pytest -m "not notebook and not browser and not slow"

demo: setup  ## the Gradio demo on the built-in data, at http://127.0.0.1:7860
	GRADIO_ANALYTICS_ENABLED=False $(PY) -m demo

lab: setup  ## the notebooks in JupyterLab
	$(VENV)/bin/jupyter lab $(ROOT_FLAG) --notebook-dir notebooks

cache-05: setup  ## before a class: run notebook 05 as JupyterLab will (its CLASSROOM switch, same data and cache)
	$(PY) notebooks/run_notebooks.py 05 --as-lab

notebooks: setup  ## sync each notebook pair (notebooks/NN_name.py <-> .ipynb) and strip outputs
	$(PY) notebooks/sync_notebooks.py

student: setup  ## build/student/: the notebooks without solutions, to hand out
	$(PY) notebooks/course_editions.py student

assignments: setup  ## build/assignments/: student/ to hand out (public tests) and autograder/autograder.zip (all tests)
	$(PY) notebooks/assignments.py build

grade: assignments  ## grade SUBMISSIONS/<student>/NN_name.ipynb with otter (headless, no Docker) [NOTEBOOKS="02 04"]
	@[ -n "$(SUBMISSIONS)" ] || { echo "usage: make grade SUBMISSIONS=folder [NOTEBOOKS=\"02 04\"]"; exit 2; }
	$(PY) notebooks/assignments.py grade $(SUBMISSIONS) $(NOTEBOOKS)

slides: setup  ## build/slides/: a reveal.js deck and a PDF per notebook (runs those whose code changed, FAST mode; FORCE=1: all)
	$(PY) notebooks/course_editions.py slides $(if $(FORCE),--force)

slides-runtime:  ## reveal.js for the slide-deck test when npm is here (the test skips without it)
	@[ -f build/slides/reveal.js/mathjax/MathJax.js ] || { command -v npm >/dev/null 2>&1 && $(MAKE) --no-print-directory reveal; } \
	  || echo "note: no npm; the slide-deck test will be skipped (make reveal)"

reveal:  ## reveal.js 4.0.2, require.js and MathJax 2.7 from npm into build/slides/reveal.js: decks that work offline
	mkdir -p build/slides
	cd build/slides && rm -rf reveal.js && mkdir -p reveal.js/mathjax && \
	  npm pack --silent reveal.js@4.0.2 requirejs@2.3 mathjax@2.7.7 >/dev/null && \
	  tar xzf reveal.js-4.0.2.tgz -C reveal.js --strip-components 1 && \
	  tar xzf requirejs-2.3.*.tgz -O package/require.js > reveal.js/require.js && \
	  tar xzf mathjax-2.7.7.tgz -C reveal.js/mathjax --strip-components 1 --exclude=package/unpacked && \
	  rm -f *.tgz

evaluate: setup  ## evaluate on the built-in data (DATA=root CATEGORY=name for real data)
	$(VENV)/bin/patchcore evaluate $(if $(DATA),--data $(DATA)) --category $(or $(CATEGORY),all)

benchmark: setup  ## speed and memory figures (coreset, fit, predict, notebooks; real data when present)
	$(PY) benchmarks/bench_coreset.py
	$(PY) benchmarks/bench_predict.py
	$(PY) benchmarks/bench_real_data.py
	$(PY) notebooks/run_notebooks.py

environment: setup  ## regenerate environment.yml from pyproject.toml
	$(PY) tools/gen_environment.py > environment.yml

lint: setup
	$(VENV)/bin/ruff check patchcore_core demo tests benchmarks tools notebooks/*.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
