# The two commands a newcomer needs (see README):
#   make server   start Outpost on the embedded defaults (SQLite + DuckDB in ./outpost-data)
#   make test     run the whole test suite
# `make server PORT=9090` (or OUTPOST_PORT=9090) picks the port; `make server` installs runtime
# dependencies only, `make test`/`make lint` add the dev tools.
.PHONY: server test test-fast lint bench wheel constraints

PORT ?=
# Per-test distribution with work stealing: an idle worker takes tests from a busy one, so no long
# file serialises the run (--dist loadfile did). Three workers: the tests mostly wait on processes.
XDIST ?= -n 3 --dist worksteal

server:
	@scripts/bootstrap.sh runtime
	.venv/bin/outpost server $(if $(PORT),--port $(PORT))

# --durations: every run (and CI's log) ends with the 25 slowest tests, where suite time goes.
test:
	@scripts/bootstrap.sh dev
	@scripts/system-deps.sh
	@scripts/run-tests.sh $(XDIST) --durations=25 $(PYTEST_ARGS)

# Everything but the end-to-end tests marked slow (> 20 s each).
test-fast:
	@scripts/bootstrap.sh dev
	@scripts/system-deps.sh
	@scripts/run-tests.sh $(XDIST) -m 'not slow' $(PYTEST_ARGS)

lint:
	@scripts/bootstrap.sh dev
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

bench:
	@scripts/bootstrap.sh dev
	.venv/bin/python bench/dispatch.py
	.venv/bin/python bench/telemetry.py

# A wheel for worker (or server) machines that are not a clone: dist/outpost-*.whl, and
# dist/outpost-kit.tar.gz: the wheel, packaging/install.sh, the systemd units and the README.
wheel:
	@scripts/bootstrap.sh runtime
	rm -rf dist/kit && mkdir -p dist/kit
	.venv/bin/python -m pip wheel --quiet --no-deps -w dist/kit .
	cp -r packaging/install.sh packaging/systemd README.md dist/kit/
	cp dist/kit/outpost-*.whl dist/
	tar -C dist -czf dist/outpost-kit.tar.gz --transform 's,^kit,outpost-kit,' kit
	@echo "built: $$(ls dist/outpost-*.whl) and dist/outpost-kit.tar.gz"

constraints:
	.venv/bin/python -m pip install --quiet --upgrade -e '.[dev]'
	.venv/bin/python -m pip freeze --exclude-editable | grep -v '^outpost' > constraints.txt
