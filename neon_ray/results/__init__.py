"""Results, bottom up:

- `schema.py`: the one row schema every method writes, `result_row`, run-ID and tolerance checks.
- `runs.py`: run manifests (`RES/_runs/`): was a run complete, killed, or failed?
- `store.py`: `write_results` (atomic, one file per run, method and dataset) and `read_results`.
- `summary.py`: `summarise` / `format_summary` per method and configuration, `run_status` per run.
- `report.py`: a markdown report with summary tables and a trade-off plot.
- `html_report.py`: one self-contained HTML page (and markdown) of results or a sweep.

Nothing here imports the stages that produce results (pruning, agent, baselines, deepcomp).
"""
