# The two commands a newcomer needs (see README):
#   make server   start Outpost on the embedded defaults (SQLite + DuckDB in ./outpost-data)
#   make test     run the whole test suite
.PHONY: server test lint bench constraints

server:
	@scripts/bootstrap.sh
	.venv/bin/outpost server

test:
	@scripts/bootstrap.sh
	@scripts/system-deps.sh
	.venv/bin/python -m pytest -n 3 --dist loadfile $(PYTEST_ARGS)

lint:
	@scripts/bootstrap.sh
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

bench:
	@scripts/bootstrap.sh
	.venv/bin/python bench/dispatch.py
	.venv/bin/python bench/telemetry.py

constraints:
	.venv/bin/python -m pip install --quiet --upgrade -e '.[dev]'
	.venv/bin/python -m pip freeze --exclude-editable | grep -v '^outpost' > constraints.txt
