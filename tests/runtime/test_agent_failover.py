"""The agent tells the server what it holds, survives a replica's death, and comes back fast, quietly."""

from __future__ import annotations

import json
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.helpers.api import outputs, publish, start_job, wait_job
from tests.helpers.procs import cli, wait_until

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class RecordingProxy:
    """A forwarding HTTP proxy on 127.0.0.1 that keeps the body of every poll it passes on."""

    def __init__(self, target: str) -> None:
        self.polls: list[dict] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                return

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if "/agent/poll" in self.path:
                    proxy.polls.append({"at": time.monotonic(), "body": json.loads(body) if body else None})
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP and k.lower() != "host"}
                with httpx.Client(base_url=target, timeout=60) as client:
                    answer = client.request(self.command, self.path, content=body, headers=headers)
                self.send_response(answer.status_code)
                for k, v in answer.headers.items():
                    if k.lower() not in HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_every_poll_lists_the_jobs_the_agent_holds(server, make_agent):
    proxy = RecordingProxy(server.url)
    try:
        agent = make_agent(server, name="holder", start=False, run_args=["--concurrency", "2", "--poll-hold", "1"])
        agent.register(url=proxy.url, extra=["--force"])
        agent.start()
        with server.client() as c:
            publish(c, "nap", "sleep 3\necho done\n")
            job_id = start_job(c, "nap")
            wait_until(lambda: any(_held(p) == [job_id] for p in proxy.polls), 30, 0.1, "a poll holding it")
            job = wait_job(c, job_id, timeout=30)
            assert job["status"] == "Completed" and outputs(c, job_id) == ["done"]
            ended = time.monotonic()
            wait_until(
                lambda: any(p["at"] > ended + 1.5 and _held(p) == [] for p in proxy.polls),
                15,
                0.1,
                "a poll after the job that holds nothing",
            )
        assert all(p["body"] is not None and "held" in p["body"] for p in proxy.polls)
        # The first poll of the process asks the server to compare; answered polls say there is no need.
        assert proxy.polls[0]["body"]["settle"] is True
        assert any(p["body"]["settle"] is False for p in proxy.polls[1:])
    finally:
        proxy.close()


def _held(poll: dict) -> list[str] | None:
    return (poll["body"] or {}).get("held")


@pytest.mark.postgres
def test_agent_fails_over_when_its_replica_is_killed_mid_job(make_server, make_agent, pg_url):
    a = make_server("a", database_url=pg_url)
    b = make_server("b", database_url=pg_url)
    b.token, b.registration_key = a.token, a.registration_key  # b joined a's database: same account
    agent = make_agent(a, name="survivor", start=False)
    agent.register(url=a.url, extra=["--force", "--url", b.url])
    status = cli("worker", "status", "--state-dir", str(agent.state_dir), "--json")
    assert json.loads(status.stdout)["urls"] == [a.url, b.url]
    agent.start()
    with b.client() as cb:
        publish(cb, "long", 'echo "start $1"\nsleep 4\necho "done $1"\n')
        first = start_job(cb, "long", params=[{"name": None, "value": "0"}])
        wait_until(lambda: outputs(cb, first) == ["start 0"], 30, 0.1, "the job to start via replica a")
        a.stop(signal.SIGKILL)
        job = wait_job(cb, first, timeout=60)
        assert job["status"] == "Completed" and job["activations"] == 1, job
        assert outputs(cb, first) == ["start 0", "done 0"]
        publish(cb, "quick", 'echo "n=$1"\n')
        later = [start_job(cb, "quick", params=[{"name": None, "value": str(i)}]) for i in range(5)]
        for i, job_id in enumerate(later):
            job = wait_job(cb, job_id, timeout=60)
            assert job["status"] == "Completed" and job["activations"] == 1 and job["worker"] == "survivor", job
            assert outputs(cb, job_id) == [f"n={i}"]
    log = agent.log()
    assert f"switching to {b.url}" in log
    assert "lease lost" not in log and "Traceback" not in log


def test_agent_returns_within_seconds_of_the_server_and_logs_the_outage_once(make_server, make_agent):
    """Down long enough for the backoff to reach its cap; back within a health probe of the server."""
    server = make_server()
    agent = make_agent(server, name="patient", run_args=["--backoff-cap", "15", "--log-format", "json"])
    with server.client() as c:
        publish(c, "hi", "echo hi\n")
        assert wait_job(c, start_job(c, "hi"), timeout=30)["status"] == "Completed"
    server.stop()
    time.sleep(12)  # polls fail meanwhile: 1, 2, 4, 8 s... of backoff
    server.start()
    with server.client() as c:
        job = wait_job(c, start_job(c, "hi"), timeout=8)  # far below the 15 s cap: only the probe explains it
    assert job["status"] == "Completed"
    lines = [json.loads(line) for line in agent.log().splitlines() if line.strip()]
    messages = [x["message"] for x in lines]
    assert sum(m.startswith("poll failed") for m in messages) == 1, messages
    assert any(m.startswith("server reachable again") for m in messages)
    assert not any("HTTP Request" in m for m in messages)  # httpx's per-request lines are off by default
    assert {"time", "level", "logger", "message"} <= set(lines[0])


def test_register_takes_a_comma_list_and_old_registration_files_still_load(server, make_agent, tmp_path):
    dead = "http://127.0.0.1:9"  # discard port: nothing listens
    agent = make_agent(server, name="listed", start=False)
    state = str(agent.state_dir)
    again = cli(
        "worker", "register", "--url", f"{dead},{server.url}/", "--key", server.registration_key,
        "--group", "g1", "--name", "listed", "--state-dir", state, "--force", "--json",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["urls"] == [dead, server.url]  # the dead first one was skipped over
    bad = cli(
        "worker", "register", "--url", "ftp://x", "--key", "k", "--group", "g1", "--state-dir", str(tmp_path / "s")
    )
    assert bad.returncode != 0 and "is not an http:// or https:// URL" in bad.stderr and "Traceback" not in bad.stderr
    # A registration.json written before `urls` existed: its one `url` is the server.
    path = agent.state_dir / "registration.json"
    data = json.loads(path.read_text())
    data.pop("urls")
    data["url"] = server.url
    path.write_text(json.dumps(data))
    status = json.loads(cli("worker", "status", "--state-dir", state, "--json").stdout)
    assert status["urls"] == [server.url]
    agent.start()
    with server.client() as c:
        publish(c, "hi", "echo hi\n")
        assert wait_job(c, start_job(c, "hi"), timeout=30)["status"] == "Completed"
