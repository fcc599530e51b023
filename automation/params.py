"""The path parameters routes share, with the rule each follows (published in the OpenAPI document).

A value off the rule is refused with 422 before the route runs, in the words of
`outpost.contract.PATTERN_HINTS` (automation/middleware.py).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path

from outpost.contract import JOB_ID_PATTERN, NAME_PATTERN

NamePath = Annotated[str, Path(pattern=NAME_PATTERN, description="1-128 letters, digits, '.', '_' or '-'")]
JobIdPath = Annotated[str, Path(pattern=JOB_ID_PATTERN, description="the job's id (a UUID)")]
AssetPlural = Literal["variables", "credentials", "certificates", "connections"]
