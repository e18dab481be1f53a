"""Datasets: loading (MANIFEST names, sklearn:NAME, files), preprocessing fit on train only, the three disjoint splits, MNIST-style idx files."""
