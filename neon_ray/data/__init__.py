"""Datasets, bottom up:

- `splits.py`: `SplitConfig`, the three disjoint splits, their size checks, and `Dataset` (a split dataset).
- `sources.py`: raw tables from MANIFEST.csv, table files and the scikit-learn bundled sets; `list_datasets`.
- `preprocess.py`: labels to 0..K-1 and features encoded with training-row statistics only.
- `idx.py`: MNIST-style idx files, and MNIST-style folders as a `Dataset`.
- `datasets.py`: `load_dataset(name, data_dir, seed, split)`, the one entry point by name.
"""
