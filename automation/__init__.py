"""Control plane: runbooks, worker groups, workers, jobs and dispatch, keys, REST API."""
