"""A runbook can write every documented stream, Progress included."""

from __future__ import annotations

from tests.helpers.api import outputs, publish, start_job, wait_job


def test_prefixed_lines_reach_their_streams(server, make_agent):
    make_agent(server)
    with server.client() as c:
        publish(c, "streams", 'echo "PROGRESS: 50%"\necho "VERBOSE: v"\necho plain\n')
        job_id = start_job(c, "streams")
        assert wait_job(c, job_id)["status"] == "Completed"
        assert outputs(c, job_id, "Progress") == ["50%"]
        assert outputs(c, job_id, "Verbose") == ["v"]
        assert outputs(c, job_id, "Output") == ["plain"]
