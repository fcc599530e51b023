"""A model for Azure Data Explorer (Kusto) queries, which grafana-foundation-sdk lacks.

Field names follow the Grafana ADX plugin's KustoQuery. Registering the variant lets
the SDK decode committed dashboards through this model instead of an untyped bag,
so a missing or mistyped field fails validation.
"""

from __future__ import annotations

import typing

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

ADX_TYPE = "grafana-azure-data-explorer-datasource"
RESULT_FORMATS = ("table", "time_series", "time_series_adx_series", "logs", "trace")
_KEYS = {"refId", "datasource", "query", "database", "resultFormat", "queryType", "querySource", "rawMode"}


class KustoQuery(cogvariants.Dataquery):
    def __init__(
        self,
        ref_id: str = "A",
        query: str = "",
        database: str = "",
        result_format: str = "table",
        datasource: dashboard.DataSourceRef | None = None,
    ) -> None:
        self.ref_id = ref_id
        self.query = query
        self.database = database
        self.result_format = result_format
        self.datasource = datasource

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "query": self.query,
            "database": self.database,
            "resultFormat": self.result_format,
            # Raw KQL, shown in the query editor as written.
            "queryType": "KQL",
            "querySource": "raw",
            "rawMode": True,
        }
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        return payload

    @classmethod
    def from_json(cls, data: dict[str, typing.Any]) -> typing.Self:
        unknown = set(data) - _KEYS
        if unknown:
            raise ValueError(f"unknown Kusto query fields: {sorted(unknown)}")
        for key in ("refId", "query", "database", "resultFormat"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise ValueError(f"Kusto query needs a non-empty string {key!r}")
        if data["resultFormat"] not in RESULT_FORMATS:
            raise ValueError(f"resultFormat must be one of {RESULT_FORMATS}")
        if data.get("queryType") != "KQL" or data.get("rawMode") is not True:
            raise ValueError("Kusto panel queries must be raw KQL")
        ds = data.get("datasource")
        return cls(
            ref_id=data["refId"],
            query=data["query"],
            database=data["database"],
            result_format=data["resultFormat"],
            datasource=dashboard.DataSourceRef.from_json(ds) if ds is not None else None,
        )


class KustoQueryBuilder(cogbuilder.Builder[KustoQuery]):
    def __init__(self, query: str, database: str, datasource: dashboard.DataSourceRef) -> None:
        self._internal = KustoQuery(query=query, database=database, datasource=datasource)

    def ref_id(self, ref_id: str) -> typing.Self:
        self._internal.ref_id = ref_id
        return self

    def result_format(self, fmt: str) -> typing.Self:
        self._internal.result_format = fmt
        return self

    def build(self) -> KustoQuery:
        return self._internal


def register() -> None:
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=ADX_TYPE, from_json_hook=KustoQuery.from_json)
    )
