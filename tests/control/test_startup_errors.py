"""`outpost server` start-up failures: one line that says what to change, nothing printed before it is true."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.helpers.pki import make_ca_and_cert
from tests.helpers.procs import OUTPOST, Server, free_port


def start_server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OUTPOST, "server", *args], capture_output=True, text=True, timeout=60)


def assert_one_line_refusal(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Non-zero, one readable line, no credentials printed, no traceback or nanobind leak report."""
    assert result.returncode != 0, result.stdout
    output = result.stdout + result.stderr
    assert "admin token" not in output and "listening on" not in output, output
    assert "Traceback" not in output and "leaked" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_second_server_on_the_same_data_dir_names_the_first_pid(server: Server) -> None:
    result = start_server("--port", str(free_port()), "--data-dir", str(server.data_dir))
    assert server.proc is not None
    assert_one_line_refusal(
        result, f"data directory {server.data_dir} is in use by another outpost server (PID {server.proc.pid})"
    )
    with server.client() as c:  # the first one is untouched
        assert c.get("/api/v1/health").status_code == 200


def test_a_crashed_server_leaves_no_stale_lock(tmp_path: Path) -> None:
    first = Server(tmp_path / "data").start()
    first.stop(signal.SIGKILL)
    again = Server(tmp_path / "data", port=free_port()).start()  # would raise if the lock were still held
    again.stop()


def test_busy_port_suggests_another_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = start_server("--port", str(port), "--data-dir", str(tmp_path / "data"))
    assert_one_line_refusal(result, f"127.0.0.1:{port}", "in use", "--port")


def test_port_from_the_environment(tmp_path: Path) -> None:
    import os

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [*OUTPOST, "server", "--data-dir", str(tmp_path / "data")],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "OUTPOST_PORT": str(port)},
        )
    assert_one_line_refusal(result, f"127.0.0.1:{port}", "--port")


def test_unknown_bind_address(tmp_path: Path) -> None:
    result = start_server("--host", "no-such-host.invalid", "--data-dir", str(tmp_path / "data"))
    assert_one_line_refusal(result, "no-such-host.invalid", "unknown address", "--host")


def test_address_not_on_this_machine(tmp_path: Path) -> None:
    result = start_server("--host", "192.0.2.1", "--port", str(free_port()), "--data-dir", str(tmp_path / "data"))
    assert_one_line_refusal(result, "192.0.2.1", "not an address of this machine")


def test_swapped_tls_files_are_named(tmp_path: Path) -> None:
    pki = make_ca_and_cert(tmp_path)
    result = start_server(
        "--port", str(free_port()), "--data-dir", str(tmp_path / "data"),
        "--tls-cert", str(pki["key"]), "--tls-key", str(pki["cert"]),
    )  # fmt: skip
    assert_one_line_refusal(result, "swapped", str(pki["key"]), str(pki["cert"]))


def test_key_of_another_certificate_is_named(tmp_path: Path) -> None:
    pki = make_ca_and_cert(tmp_path)
    other = tmp_path / "other.key"
    other.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    result = start_server(
        "--port", str(free_port()), "--data-dir", str(tmp_path / "data"),
        "--tls-cert", str(pki["cert"]), "--tls-key", str(other),
    )  # fmt: skip
    assert_one_line_refusal(result, f"--tls-key {other} does not belong to the certificate in --tls-cert {pki['cert']}")


def test_a_certificate_that_is_not_pem_is_named(tmp_path: Path) -> None:
    pki = make_ca_and_cert(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    result = start_server(
        "--port", str(free_port()), "--data-dir", str(tmp_path / "data"),
        "--tls-cert", str(junk), "--tls-key", str(pki["key"]),
    )  # fmt: skip
    assert_one_line_refusal(result, f"--tls-cert {junk} is not a PEM certificate")


def test_clean_exits_print_no_leak_warnings(tmp_path: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        s = Server(tmp_path / f"data-{sig.name}").start()
        with s.client() as c:
            c.post("/api/v1/query", json={"query": "Heartbeat | take 1"})  # DuckDB cursors were used
        s.stop(sig)
        assert s.proc is not None and s.proc.returncode in (0, -sig, 128 + sig), s.log_path.read_text()
        log = s.log_path.read_text()
        assert "leaked" not in log and "Traceback" not in log, log
