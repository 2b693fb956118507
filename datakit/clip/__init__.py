"""CLIP image indexes and text-driven retrieval (ZUTIS's ``category_to_p_images`` files).

``model`` loads open_clip models, ``images`` reads image inputs, ``embed`` writes resumable
indexes (``store`` is their on-disk format), ``retrieve`` runs exact top-k over them.
Submodules import torch/open_clip lazily where they can, so ``import datakit.clip`` is cheap.
"""
