"""Deep Compression (Han et al. 2015, 2016) for neon-ray networks, method.md §10.

Modules, one stage or concept each (import them directly; this package imports nothing):

- prune.py       per-layer magnitude pruning (|w| < q*std) with fixed masks and masked retraining
- share.py       1-D k-means weight sharing (linear/density/forgy init), centroid fine-tuning
- huffman.py     canonical Huffman coding (the stored table is just code lengths)
- relindex.py    relative positions of surviving weights, with an escape for long gaps
- bits.py        fixed-width bit packing and bounds-checked byte reading
- fileformat.py  the compressed file: write, read back, validate (CheckpointError on damage)
- pipeline.py    `DeepCompConfig`, `compress_model(model, dataset, cfg, out_path)` -> (model, rows),
                 `format_stage_table(rows)`
- lenet.py       LeNet-300-100 (an ArchSpec) and LeNet-5

Both retraining stages train with `nets.training.fit` (one `TrainConfig` each).
"""
