"""The `vizcnn` command line (installed as `vizcnn.cli`)."""
