"""Azure Automation's ``automationassets`` module, for runbooks on an Outpost worker.

The agent puts this file on the runbook's PYTHONPATH (for the runbook process only)
and passes ``AUTOMATION_ASSETS_URL`` and a per-job ``AUTOMATION_ASSETS_TOKEN``: a
local endpoint of the agent that fetches the job's assets from the service with the
worker's credential, which the runbook never sees. Standard library only.

Same names, arguments, return types and exceptions as on Azure::

    import automationassets
    from automationassets import AutomationAssetNotFound

    value = automationassets.get_automation_variable("name")      # typed JSON value
    automationassets.set_automation_variable("name", value)       # the variable must exist
    cred = automationassets.get_automation_credential("name")     # {"username": ..., "password": ...}
    conn = automationassets.get_automation_connection("name")     # {field: value, ...}
    pfx = automationassets.get_automation_certificate("name")     # PFX bytes
"""

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request

_TIMEOUT_S = 60


class AutomationAssetNotFound(Exception):
    """The asset does not exist."""


class AutomationAssetException(Exception):
    """The asset could not be read or written (e.g. the job no longer holds its lease)."""


def _call(method, kind, name, body=None):
    base = os.environ.get("AUTOMATION_ASSETS_URL")
    token = os.environ.get("AUTOMATION_ASSETS_TOKEN")
    if not base or not token:
        raise AutomationAssetException("not running inside an Outpost job (AUTOMATION_ASSETS_URL is not set)")
    url = "{}/{}/{}".format(base.rstrip("/"), kind, urllib.parse.quote(str(name), safe=""))
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=_TIMEOUT_S) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read().decode("utf-8")).get("detail", "")
        except Exception:
            detail = exc.reason
        if exc.code == 404:
            raise AutomationAssetNotFound(detail or f"{kind[:-1]} {name!r} not found") from None
        raise AutomationAssetException(f"{detail} (HTTP {exc.code})") from None
    except OSError as exc:
        raise AutomationAssetException(f"cannot reach the worker's asset endpoint: {exc}") from None
    return json.loads(raw.decode("utf-8")) if raw else None


def get_automation_variable(name):
    return _call("GET", "variables", name)["value"]


def set_automation_variable(name, value):
    _call("PUT", "variables", name, {"value": value})


def get_automation_credential(name):
    asset = _call("GET", "credentials", name)
    return {"username": asset["username"], "password": asset["password"]}


def get_automation_connection(name):
    return dict(_call("GET", "connections", name)["fields"])


def get_automation_certificate(name):
    return base64.b64decode(_call("GET", "certificates", name)["pfx"])
