"""Deep Compression (Han et al. 2015, 2016) for neon-ray networks, method.md §10.

Modules, one stage or concept each:

- prune.py       per-layer magnitude pruning (|w| < q*std) with fixed masks and retraining
- share.py       1-D k-means weight sharing (linear/density/forgy init), centroid fine-tuning
- huffman.py     canonical Huffman coding (the stored table is just code lengths)
- relindex.py    relative positions of surviving weights, with an escape for long gaps
- bits.py        fixed-width bit packing and bounds-checked byte reading
- fileformat.py  the compressed file: write, read back, validate (CheckpointError on damage)
- retrain.py     the training loop both retraining stages share
- pipeline.py    `DeepCompConfig`, `compress_model(model, dataset, cfg, out_path)` -> (model, rows)
- lenet.py       LeNet-300-100 (an ArchSpec) and LeNet-5
- checks.py      range checks shared by the configs (ConfigError naming field, value and range)
"""
from neon_ray.deepcomp.pipeline import DeepCompConfig, compress_model, format_table
from neon_ray.deepcomp.retrain import RetrainConfig

__all__ = ["DeepCompConfig", "RetrainConfig", "compress_model", "format_table"]
