"""The hybrid worker: register, long-poll outbound, run runbooks, stream back.

Talks to the service over HTTP only; imports `outpost` (contract, settings), never
`automation` or `telemetry`.
"""
