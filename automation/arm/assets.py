"""Variables, credentials, certificates, connections and connection types through ARM (automation.assets).

Azure stores a variable's value as a JSON-encoded string (`"\\"eu-west\\""`, `"42"`): so does this
door, decoding on the way in and encoding on the way out. Secret parts never come back: an
encrypted variable has no `value`, a credential no `password`, a certificate no key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from automation import assets
from automation.arm.envelope import ACCOUNT_PATH, Account, AccountDependency, iso
from automation.arm.errors import ArmError
from automation.arm.paging import page_in_memory
from automation.context import ControlPlane
from automation.errors import BadRequest, NotFound
from automation.roles import Role


class AssetBody(BaseModel):
    properties: dict[str, Any] = {}


def _common(view: dict[str, Any]) -> dict[str, Any]:
    return {
        "creationTime": iso(view["created_at"]),
        "lastModifiedTime": iso(view["updated_at"]),
        "description": view["description"],
    }


def variable_props(view: dict[str, Any]) -> dict[str, Any]:
    props = {"isEncrypted": view["encrypted"], **_common(view)}
    if not view["encrypted"]:
        props["value"] = json.dumps(view["value"])
    return props


def credential_props(view: dict[str, Any]) -> dict[str, Any]:
    return {"userName": view["username"], **_common(view)}


def certificate_props(view: dict[str, Any]) -> dict[str, Any]:
    return {
        "thumbprint": view["thumbprint"],
        "expiryTime": iso(view["expires_at"]),
        "isExportable": bool(view["exportable"]),
        **_common(view),
    }


def connection_props(view: dict[str, Any]) -> dict[str, Any]:
    fields = {k: v if isinstance(v, str) else json.dumps(v) for k, v in view["fields"].items()}
    return {"connectionType": {"name": view["connection_type"]}, "fieldDefinitionValues": fields, **_common(view)}


def _text(props: dict[str, Any], key: str, required: bool = True) -> str | None:
    value = props.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise BadRequest(f"properties.{key} is required (a string)")
    return value


def _decoded(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest('properties.value is a JSON-encoded string, as Azure stores it: e.g. "\\"eu-west\\"" or "42"')
    try:
        return json.loads(value)
    except RecursionError:  # nested deeper than the parser goes: far past assets.MAX_VALUE_DEPTH
        raise BadRequest(f"properties.value nests too deep; at most {assets.MAX_VALUE_DEPTH} levels") from None
    except ValueError:
        raise BadRequest(
            f"properties.value {value[:60]!r} is not JSON-encoded: Azure variables hold JSON, so a text is "
            f"sent with its quotes, e.g. {json.dumps(json.dumps(value[:20]))}"
        ) from None


def save_variable(cp: ControlPlane, acct: Account, name: str, props: dict[str, Any], patch: bool) -> dict[str, Any]:
    encrypted = bool(props.get("isEncrypted", False))
    description = props.get("description")
    if patch:
        current = assets.show(cp, "variable", name)
        encrypted = current["encrypted"]
        if "value" not in props:
            if encrypted:
                raise BadRequest(f"variable {name} is encrypted: an update must send its value")
            props = {**props, "value": json.dumps(current["value"])}
    if encrypted:
        acct.principal.require(Role.ADMIN, "an encrypted variable")
    return assets.set_variable(cp, name, _decoded(props.get("value")), encrypted, description)


def save_credential(cp: ControlPlane, acct: Account, name: str, props: dict[str, Any], patch: bool) -> dict[str, Any]:
    username = _text(props, "userName", required=not patch)
    if patch and username is None:
        username = assets.show(cp, "credential", name)["username"]
    password = props.get("password")
    if not isinstance(password, str):
        raise BadRequest("properties.password is required (a string): a credential is saved with its password")
    return assets.set_credential(cp, name, username or "", password, props.get("description"))


def save_certificate(cp: ControlPlane, acct: Account, name: str, props: dict[str, Any], patch: bool) -> dict[str, Any]:
    if patch:
        raise ArmError(501, "NotImplemented", "updating a certificate: PUT it again with its base64Value")
    data = _text(props, "base64Value")
    return assets.set_certificate(
        cp, name, data or "", None, bool(props.get("isExportable", False)), props.get("description")
    )


def save_connection(cp: ControlPlane, acct: Account, name: str, props: dict[str, Any], patch: bool) -> dict[str, Any]:
    if patch:
        current = assets.show(cp, "connection", name)
        props = {
            "connectionType": {"name": current["connection_type"]},
            "fieldDefinitionValues": current["fields"],
            **props,
        }
    kind = (props.get("connectionType") or {}).get("name") if isinstance(props.get("connectionType"), dict) else None
    if not kind:
        raise BadRequest("properties.connectionType.name is required")
    fields = props.get("fieldDefinitionValues") or {}
    if not isinstance(fields, dict):
        raise BadRequest("properties.fieldDefinitionValues is an object of field names and values")
    return assets.set_connection(cp, name, kind, fields, [], props.get("description"))


@dataclass(frozen=True)
class Kind:
    path: str  # the ARM path segment
    kind: str  # automation.assets' kind
    props: Callable[[dict[str, Any]], dict[str, Any]]
    save: Callable[[ControlPlane, Account, str, dict[str, Any], bool], dict[str, Any]]
    admin_only: bool  # secret kinds: only admins write or delete them, as on /api/v1


KINDS = (
    Kind("variables", "variable", variable_props, save_variable, False),
    Kind("credentials", "credential", credential_props, save_credential, True),
    Kind("certificates", "certificate", certificate_props, save_certificate, True),
    Kind("connections", "connection", connection_props, save_connection, False),
)


def connection_type(acct: Account, name: str, fields: list[str]) -> dict[str, Any]:
    definitions = {f: {"isEncrypted": False, "isOptional": False, "type": "System.String"} for f in fields}
    props = {"isGlobal": True, "fieldDefinitions": definitions, "description": "built in"}
    return acct.resource("connectionTypes", name, props)


def router(cp: ControlPlane, read: AccountDependency, author: AccountDependency, admin: AccountDependency) -> APIRouter:
    r = APIRouter(prefix=ACCOUNT_PATH)

    def add(k: Kind) -> None:
        write = admin if k.admin_only else author

        def exists(name: str) -> bool:
            try:
                assets.show(cp, k.kind, name)
            except NotFound:
                return False
            return True

        @r.get(f"/{k.path}", name=f"list_{k.path}")
        def list_assets(request: Request, acct: Account = Depends(read)) -> dict[str, Any]:
            views = assets.list_kind(cp, k.kind)
            return page_in_memory(request, [acct.resource(k.path, v["name"], k.props(v)) for v in views])

        @r.get(f"/{k.path}/{{name}}", name=f"get_{k.path}")
        def get_asset(name: str, acct: Account = Depends(read)) -> dict[str, Any]:
            return acct.resource(k.path, name, k.props(assets.show(cp, k.kind, name)))

        @r.put(f"/{k.path}/{{name}}", name=f"put_{k.path}")
        def put_asset(name: str, body: AssetBody, acct: Account = Depends(write)) -> JSONResponse:
            existed = exists(name)
            view = k.save(cp, acct, name, dict(body.properties), False)
            return JSONResponse(acct.resource(k.path, name, k.props(view)), status_code=200 if existed else 201)

        @r.patch(f"/{k.path}/{{name}}", name=f"patch_{k.path}")
        def patch_asset(name: str, body: AssetBody, acct: Account = Depends(write)) -> dict[str, Any]:
            view = k.save(cp, acct, name, dict(body.properties), True)
            return acct.resource(k.path, name, k.props(view))

        @r.delete(f"/{k.path}/{{name}}", name=f"delete_{k.path}")
        def delete_asset(name: str, acct: Account = Depends(write)) -> Response:
            assets.delete(cp, k.kind, name)
            return Response(status_code=200)

    for k in KINDS:
        add(k)

    @r.get("/connectionTypes")
    def list_connection_types(request: Request, acct: Account = Depends(read)) -> dict[str, Any]:
        types = [connection_type(acct, n, f) for n, f in sorted(assets.CONNECTION_TYPES.items())]
        return page_in_memory(request, types)

    @r.get("/connectionTypes/{name}")
    def get_connection_type(name: str, acct: Account = Depends(read)) -> dict[str, Any]:
        fields = assets.CONNECTION_TYPES.get(name)
        if fields is None:
            raise ArmError(404, "NotFound", f"connection type {name!r} is not one of the built-in ones")
        return connection_type(acct, name, fields)

    return r
