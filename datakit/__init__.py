"""datakit: shards, recipes, CLIP retrieval, streaming and evaluation for segmentation research."""

__version__ = "0.1.0"
