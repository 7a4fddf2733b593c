"""Storage backends: LanceDB (vectors), Kuzu (graph), PostgreSQL catalog."""
