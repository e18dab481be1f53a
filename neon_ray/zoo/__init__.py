"""The network zoo: NEON's randomly generated base networks, trained in parallel on Ray, stored with stable IDs.

- `config.py`: `ZooConfig` (validated settings), dataset folder names and network IDs.
- `store.py`: the zoo's layout on disk, checks before a build writes, manifests, `Zoo` / `open_zoo` to read it.
- `build.py`: planning every network from the config and `build_zoo`, training the missing ones on Ray.
"""
