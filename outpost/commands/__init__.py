"""Client commands of the `outpost` CLI: each talks to a server over HTTP only."""
