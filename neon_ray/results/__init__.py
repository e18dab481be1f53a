"""Results: the one Parquet schema, its store and run manifests, summaries and reports."""
