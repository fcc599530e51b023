"""The Kusto REST API's response shapes (v1 and v2) and the few management commands.

Enough of https://learn.microsoft.com/azure/data-explorer/kusto/api/rest/ for the
official `azure-kusto-data` client and Grafana's Azure Data Explorer data source:
queries over /v2/rest/query (frames) and /v1/rest/query (tables), and
`.show tables`, `.show databases`, `.show version`, `.show database(s) schema as json`,
`.show functions` over /v1/rest/mgmt.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from outpost import __version__
from telemetry import kql

DATABASE = "Outpost"

# Kusto scalar type -> (v1 DataType, .NET type in schema JSON)
TYPES: dict[str, tuple[str, str]] = {
    "string": ("String", "System.String"),
    "datetime": ("DateTime", "System.DateTime"),
    "long": ("Int64", "System.Int64"),
    "int": ("Int32", "System.Int32"),
    "real": ("Double", "System.Double"),
    "bool": ("Boolean", "System.SByte"),
    "dynamic": ("Object", "System.Object"),
    "timespan": ("TimeSpan", "System.TimeSpan"),
    "guid": ("Guid", "System.Guid"),
    "decimal": ("Decimal", "System.Data.SqlTypes.SqlDecimal"),
}


class MgmtError(ValueError):
    pass


def v1_table(name: str, columns: list[tuple[str, str]], rows: list[list[Any]]) -> dict[str, Any]:
    return {
        "TableName": name,
        "Columns": [
            {"ColumnName": n, "DataType": TYPES.get(t, ("Object", ""))[0], "ColumnType": t} for n, t in columns
        ],
        "Rows": rows,
    }


def v1_response(columns: list[tuple[str, str]], rows: list[list[Any]]) -> dict[str, Any]:
    return {"Tables": [v1_table("Table_0", columns, rows)]}


# Kusto's Visualization properties, every key present (null when the query's render did not set it).
VISUALIZATION_KEYS = (
    "Visualization", "Title", "XColumn", "Series", "YColumns", "AnomalyColumns", "XTitle", "YTitle", "XAxis",
    "YAxis", "Legend", "YSplit", "Accumulate", "IsQuerySorted", "Kind", "Ymin", "Ymax", "Xmin", "Xmax",
)  # fmt: skip


def visualization_properties(hint: dict[str, Any] | None) -> dict[str, Any]:
    """The `Visualization` value of @ExtendedProperties: the query's `render`, or all nulls without one."""
    hint = hint or {}
    return {**{key: hint.get(key) for key in VISUALIZATION_KEYS}, **hint}


def v2_response(
    columns: list[tuple[str, str]],
    rows: list[list[Any]],
    *,
    truncated: bool = False,
    request_id: str | None = None,
    visualization: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    completion_rows = [
        [
            now,
            4,
            "Info",
            "QueryInfo",
            json.dumps({"Count": 1, "Text": "Query completed successfully"}),
            request_id or str(uuid.uuid4()),
        ]
    ]
    if truncated:
        completion_rows.append(
            [
                now,
                3,
                "Warning",
                "QueryWarning",
                json.dumps({"Text": "Query result set has exceeded the internal record count limit"}),
                request_id or "",
            ]
        )
    return [
        {
            "FrameType": "DataSetHeader",
            "IsProgressive": False,
            "Version": "v2.0",
            "IsFragmented": False,
            "ErrorReportingPlacement": "EndOfTable",
        },
        {
            "FrameType": "DataTable",
            "TableId": 0,
            "TableKind": "QueryProperties",
            "TableName": "@ExtendedProperties",
            "Columns": [
                {"ColumnName": "TableId", "ColumnType": "int"},
                {"ColumnName": "Key", "ColumnType": "string"},
                {"ColumnName": "Value", "ColumnType": "dynamic"},
            ],
            # Kusto carries the value as a JSON string in this dynamic column; clients json-decode it.
            "Rows": [[1, "Visualization", json.dumps(visualization_properties(visualization))]],
        },
        {
            "FrameType": "DataTable",
            "TableId": 1,
            "TableKind": "PrimaryResult",
            "TableName": "PrimaryResult",
            "Columns": [{"ColumnName": n, "ColumnType": t} for n, t in columns],
            "Rows": rows,
        },
        {
            "FrameType": "DataTable",
            "TableId": 2,
            "TableKind": "QueryCompletionInformation",
            "TableName": "QueryCompletionInformation",
            "Columns": [
                {"ColumnName": "Timestamp", "ColumnType": "datetime"},
                {"ColumnName": "Level", "ColumnType": "int"},
                {"ColumnName": "LevelName", "ColumnType": "string"},
                {"ColumnName": "EventTypeName", "ColumnType": "string"},
                {"ColumnName": "Payload", "ColumnType": "string"},
                {"ColumnName": "ClientRequestId", "ColumnType": "string"},
            ],
            "Rows": completion_rows,
        },
        {"FrameType": "DataSetCompletion", "HasErrors": False, "Cancelled": False},
    ]


def error_body(exc: kql.QueryError) -> dict[str, Any]:
    """Kusto's error envelope, which azure-kusto-data turns into KustoApiError with this message."""
    kind = {
        "syntax_error": "Kusto.Data.Exceptions.SyntaxException",
        "unknown_table": "Kusto.Data.Exceptions.EntityNotFoundException",
        "unknown_column": "Kusto.Data.Exceptions.SemanticException",
        "timeout": "Kusto.Data.Exceptions.QueryTimeoutException",
        "busy": "Kusto.Data.Exceptions.KustoRequestThrottledException",
    }.get(exc.kind, "Kusto.Data.Exceptions.KustoBadRequestException")
    code = {"timeout": "RequestTimeout", "busy": "TooManyRequests"}.get(exc.kind, "BadRequest")
    return {
        "error": {
            "code": code,
            "message": exc.message,
            "@type": kind,
            "@message": exc.message,
            "@permanent": exc.kind not in ("timeout", "busy"),
            **({"@line": exc.line, "@column": exc.column} if exc.line is not None else {}),
        }
    }


def schema_json(tables: dict[str, list[tuple[str, str]]]) -> dict[str, Any]:
    def cols(spec: list[tuple[str, str]]) -> list[dict[str, str]]:
        out = []
        for name, duck in spec:
            ktype = kql.kusto_type(duck)
            out.append({"Name": name, "Type": TYPES[ktype][1], "CslType": ktype})
        return out

    return {
        "Name": DATABASE,
        "Tables": {
            t: {"Name": t, "EntityType": "Table", "OrderedColumns": cols(spec), "Folder": "", "DocString": ""}
            for t, spec in tables.items()
        },
        "ExternalTables": {},
        "MaterializedViews": {},
        "Functions": {},
        "MajorVersion": 1,
        "MinorVersion": 0,
    }


def mgmt(command: str, tables: dict[str, list[tuple[str, str]]]) -> tuple[list[tuple[str, str]], list[list[Any]]]:
    """Answer a management command; raise MgmtError for anything else."""
    text = re.sub(r"\s+", " ", command.strip()).rstrip(";").strip()
    low = text.lower()
    if low == ".show tables" or low.startswith(".show tables "):
        return (
            [("TableName", "string"), ("DatabaseName", "string"), ("Folder", "string"), ("DocString", "string")],
            [[t, DATABASE, "", ""] for t in tables],
        )
    if low == ".show databases":
        return (
            [
                ("DatabaseName", "string"),
                ("PersistentStorage", "string"),
                ("Version", "string"),
                ("IsCurrent", "bool"),
                ("DatabaseAccessMode", "string"),
                ("PrettyName", "string"),
                ("ReservedSlot1", "bool"),
                ("DatabaseId", "guid"),
                ("InTransitionTo", "string"),
            ],
            [
                [
                    DATABASE,
                    "duckdb",
                    "v1.0",
                    True,
                    "ReadOnly",
                    DATABASE,
                    None,
                    "00000000-0000-0000-0000-000000000001",
                    "",
                ]
            ],
        )
    if low == ".show version":
        return (
            [
                ("BuildVersion", "string"),
                ("BuildTime", "datetime"),
                ("ServiceType", "string"),
                ("ProductVersion", "string"),
                ("ServiceOffering", "string"),
            ],
            [[__version__, None, "Engine", f"Outpost {__version__}", json.dumps({"Type": "Outpost"})]],
        )
    if re.fullmatch(r"\.show databases schema as json", low) or re.fullmatch(
        r"\.show database (\[?['\"]?\w+['\"]?\]?) schema as json", low
    ):
        doc = {"Databases": {DATABASE: schema_json(tables)}}
        return [("DatabaseSchema", "string")], [[json.dumps(doc)]]
    if low == ".show functions":
        return (
            [
                ("Name", "string"),
                ("Parameters", "string"),
                ("Body", "string"),
                ("Folder", "string"),
                ("DocString", "string"),
            ],
            [],
        )
    if re.fullmatch(r"\.show (database )?\w* ?schema", low) or low.startswith(".show table"):
        rows = [[t, c, kql.kusto_type(d), DATABASE] for t, spec in tables.items() for c, d in spec]
        return (
            [("TableName", "string"), ("ColumnName", "string"), ("ColumnType", "string"), ("DatabaseName", "string")],
            rows,
        )
    raise MgmtError(
        f"unsupported management command {text.split(' ')[0:2]!r}: Outpost answers .show tables, .show databases, "
        ".show version, .show databases schema as json, .show functions"
    )
