"""DNS through a dnspython server written here: public, private, NXDOMAIN, SERVFAIL, slow, silent, split horizon."""

from __future__ import annotations

import re

import pytest

from tests.diagnostics.conftest import clean_env, run_cli
from tests.diagnostics.servers import AppConfig, DnsServer, Zone

ACCOUNT = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


@pytest.fixture
def other_dns():
    made: list[DnsServer] = []

    def make(zones: dict[str, Zone]) -> DnsServer:
        made.append(DnsServer(zones))
        return made[-1]

    yield make
    for s in made:
        s.close()


def _run(make_app, pki, tmp_path, system_dns, zones, endpoints, *extra):
    server, resolv = system_dns
    server.zones.update({k: v for k, v in zones.items()})
    app = make_app(pki.valid, AppConfig(endpoints=endpoints, region="lab-1"))
    run = run_cli(
        "--state-dir",
        str(tmp_path / "none"),
        "--url",
        app.url,
        "--ca-file",
        str(pki.ca.pem),
        "--check",
        "dns",
        *extra,
        env=clean_env(OUTPOST_RESOLV_CONF=str(resolv)),
    )
    return run, f"system ({server.host} from {resolv})"


def _ep(name: str, **kw) -> dict:
    return {"name": name, "port": 443, "url": f"https://{name}:443", "purpose": "agent service", **kw}


CASES = {
    "public": (
        Zone(a=["20.50.2.1"], aaaa=["2603:1020::1"]),
        {},
        0,
        "pass",
        r"public\.diag\.test -> 20\.50\.2\.1, 2603:1020::1 via {res} in \d+ ms",
    ),
    "nxdomain": (
        None,
        {},
        1,
        "fail",
        r"nxdomain\.diag\.test: NXDOMAIN: nxdomain\.diag\.test does not exist \(resolver {res}\)",
    ),
    "servfail": (
        Zone(rcode="SERVFAIL"),
        {},
        1,
        "fail",
        r"servfail\.diag\.test: SERVFAIL: the resolver failed to get an answer from the authoritative servers "
        r"\(resolver {res}\)",
    ),
    "slow": (
        Zone(a=["20.50.2.2"], delay_s=1.3),
        {},
        0,
        "warn",
        r"slow\.diag\.test -> 20\.50\.2\.2 via {res} in 1\d\d\d ms; slow: {res} took 1\d\d\d ms",
    ),
    "private": (
        Zone(a=["10.1.2.3"]),
        {"network": "public"},
        0,
        "warn",
        r"private\.diag\.test resolves to private 10\.1\.2\.3 where a public address is expected",
    ),
    "noaddr": (
        Zone(),
        {},
        1,
        "fail",
        r"noaddr\.diag\.test: noaddr\.diag\.test exists but has no A or AAAA record "
        r"\(resolver {res}\)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_dns_case(case, make_app, pki, tmp_path, system_dns):
    zone, extra_fields, rc, status, pattern = CASES[case]
    name = f"{case}.diag.test"
    run, res = _run(make_app, pki, tmp_path, system_dns, {name: zone} if zone else {}, [_ep(name, **extra_fields)])
    r = run.result("dns.resolve", f"{name}:443")
    assert (run.rc, r["status"]) == (rc, status), r
    assert re.fullmatch(pattern.replace("{res}", re.escape(res)), r["finding"]), r["finding"]
    assert (
        run.result("dns.resolve", f"127.0.0.1:{r and run.doc['results'][0]['target'].split(':')[1]}")["status"]
        == "skip"
    )


def test_resolver_that_never_answers(make_app, pki, tmp_path, system_dns):
    name = "silent.diag.test"
    run, res = _run(make_app, pki, tmp_path, system_dns, {name: Zone(drop=True)}, [_ep(name)], "--timeout", "1")
    r = run.result("dns.resolve", f"{name}:443")
    assert (run.rc, r["status"]) == (1, "fail")
    assert re.fullmatch(rf"silent\.diag\.test: no answer within [01]\.\ds \(resolver {re.escape(res)}\)", r["finding"])
    assert "UDP/TCP 53" in r["remediation"]


def test_privatelink_cname_answering_public(make_app, pki, tmp_path, system_dns):
    name = "acct.agentsvc.diag.test"
    zones = {
        name: Zone(cname="acct.privatelink.agentsvc.diag.test"),
        "acct.privatelink.agentsvc.diag.test": Zone(a=["20.60.1.1"]),
    }
    run, _ = _run(make_app, pki, tmp_path, system_dns, zones, [_ep(name)])
    r = run.result("dns.resolve", f"{name}:443")
    assert (run.rc, r["status"]) == (0, "warn")
    assert r["finding"] == (
        f"{name} is CNAMEd to acct.privatelink.agentsvc.diag.test (Private Link) but resolves to public 20.60.1.1"
    )
    assert "168.63.129.16" in r["remediation"]
    assert r["evidence"]["system"]["cnames"] == ["acct.privatelink.agentsvc.diag.test"]


def test_split_horizon_between_resolvers(make_app, pki, tmp_path, system_dns, other_dns):
    name = "split.diag.test"
    other = other_dns({name: Zone(a=["10.0.0.7"])})
    run, res = _run(
        make_app, pki, tmp_path, system_dns, {name: Zone(a=["20.50.2.9"])}, [_ep(name)], "--dns-server", other.address
    )
    r = run.result("dns.resolve", f"{name}:443")
    assert (run.rc, r["status"]) == (0, "warn")
    assert r["finding"] == (
        f"split-horizon answers for {name}: {res} -> public 20.50.2.9, {other.address} -> private 10.0.0.7"
    )


def test_resolvers_agree(make_app, pki, tmp_path, system_dns, other_dns):
    name = "same.diag.test"
    other = other_dns({name: Zone(a=["20.50.2.10"])})
    run, res = _run(
        make_app, pki, tmp_path, system_dns, {name: Zone(a=["20.50.2.10"])}, [_ep(name)], "--dns-server", other.address
    )
    r = run.result("dns.resolve", f"{name}:443")
    assert (run.rc, r["status"]) == (0, "pass")
    assert r["finding"].endswith("; other resolvers agree")


def test_system_resolver_fails_where_another_resolves(make_app, pki, tmp_path, system_dns, other_dns):
    name = "internal.diag.test"
    other = other_dns({name: Zone(a=["10.0.0.8"])})
    run, res = _run(make_app, pki, tmp_path, system_dns, {}, [_ep(name)], "--dns-server", other.address)
    r = run.result("dns.resolve", f"{name}:443")
    assert (run.rc, r["status"]) == (1, "fail")
    assert r["finding"] == (
        f"{name}: NXDOMAIN: {name} does not exist (resolver {res}); {other.address} answers 10.0.0.8"
    )
    assert r["remediation"].startswith(f"make the system resolver use {other.address}")


def test_azure_region_records(tmp_path, system_dns):
    server, resolv = system_dns
    legacy = ["we-jobruntimedata-prod-su1.azure-automation.net", "we-agentservice-prod-1.azure-automation.net"]
    agentsvc = f"{ACCOUNT}.agentsvc.we.azure-automation.net"
    server.zones.update(
        {
            legacy[0]: Zone(a=["20.50.2.20"]),
            legacy[1]: Zone(a=["10.20.30.40"]),  # a hosts-style override of a public-only record
            f"{ACCOUNT}.webhook.we.azure-automation.net": Zone(a=["20.50.2.21"]),
            agentsvc: Zone(cname=f"{ACCOUNT}.privatelink.agentsvc.we.azure-automation.net"),
            f"{ACCOUNT}.privatelink.agentsvc.we.azure-automation.net": Zone(a=["10.1.0.5"]),
        }
    )
    env = clean_env(OUTPOST_RESOLV_CONF=str(resolv))
    args = ("--state-dir", str(tmp_path / "none"), "--azure-region", "West Europe", "--account-id", ACCOUNT.upper())
    listing = run_cli(*args, "--check", "endpoints", env=env)
    r = listing.result("endpoints.list")
    assert (listing.rc, r["status"]) == (0, "pass")
    assert r["finding"] == (
        f"5 endpoints (region we): {legacy[0]}:443, {legacy[1]}:443, {ACCOUNT}.webhook.we.azure-automation.net:443, "
        f"{agentsvc}:443, {ACCOUNT}.jrds.we.azure-automation.net:443"
    )
    run = run_cli(*args, "--check", "dns", env=env)
    assert run.rc == 1
    assert run.result("dns.resolve", f"{legacy[0]}:443")["status"] == "pass"
    r = run.result("dns.resolve", f"{legacy[1]}:443")
    assert (r["status"], r["finding"]) == (
        "warn",
        f"{legacy[1]} resolves to private 10.20.30.40 where a public address is expected",
    )
    assert run.result("dns.resolve", f"{agentsvc}:443")["status"] == "pass"  # private through Private Link: fine
    r = run.result("dns.resolve", f"{ACCOUNT}.jrds.we.azure-automation.net:443")
    assert r["status"] == "fail" and "NXDOMAIN" in r["finding"]
