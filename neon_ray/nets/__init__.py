"""Networks: the architecture spec and MLP, supervised training (`fit`), checkpoints (spec JSON + weights-only state_dict), and the one counting module (`metrics`)."""
