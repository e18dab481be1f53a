"""Ray Tune sweeps of the agent, ranked by the validation score.

Modules: `space` (what varies: tolerances, reward variants, dimensions; Tune's param space),
`config` (`SweepConfig`, sweep.json and job specs), `trial` (the function trainable: one agent,
validated and reported every N iterations, rolled back to its last report on restore), `table`
(the trials table, the best agent's copy, curves and held-out evaluation for reports), `sweep`
(`run_sweep`, `resume_sweep`: Tuner, searchers, ASHA, progress lines, SIGTERM).
"""
