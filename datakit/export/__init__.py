"""Exports: a built split as the folder layout another framework reads (``datakit export``).

Images are the shard's ``jpg`` bytes as stored (no re-encode); label maps are the shard's class ids
decoded through ``decode_sample`` and written as single-channel files: an 8-bit PNG (mode L)
where every id fits, otherwise a uint16 TIFF (PIL mode I;16, uncompressed) as MaskFormer writes
ADE-847. Paths are relative to ``--out``; ``<key>`` is the sample key (a safe relative path).

mmseg (``BaseSegDataset`` and its subclasses; out = ``data_root``)
  generic       images/<split>/<key>.jpg, annotations/<split>/<key>.png (or .tif);
                ``img_suffix='.jpg'``, ``seg_map_suffix='.png'`` ('.tif'), ``reduce_zero_label=False``,
                ``ignore_index`` = the split's ignore id (255, 1000 for ImageNet-S...).
  ade150        images/{training,validation}, annotations/{training,validation}/<key>.png holding the raw
                ADEChallengeData2016 values (0 other, 1..150): stock ``ADE20KDataset`` with
                ``reduce_zero_label=True`` (the shard stores the reduced map; the export undoes it exactly).
  ade847        images/{training,validation}, annotations/{training,validation}/<key>.tif (uint16, 65535
                ignore); ``seg_map_suffix='.tif'``, ``reduce_zero_label=False``; LarvSeg reads it with
                ``LoadAnnotations(int16=True)``, so 65535 becomes ``ignore_index=-1``.
  cocostuff171  images/{train2017,val2017}, annotations/{train2017,val2017}/<key>_labelTrainIds.png
                (0..170, 255): stock ``COCOStuffDataset``, ``reduce_zero_label=False``.

detectron2 (``load_sem_seg(gt_root, image_root, gt_ext, image_ext)``, pairs files by stem)
  generic       images/<split>/<key>.jpg, annotations_detectron2/<split>/<key>.png (or .tif);
                ``gt_ext='png'`` ('tif'), ``image_ext='jpg'``, ``ignore_label`` = the split's ignore id.
  ade150        images/{training,validation}, annotations_detectron2/{training,validation}/<key>.png
                (0..149, 255), as prepare_ade20k_sem_seg.py; ``ignore_label=255``.
  ade847        images_detectron2/{training,validation}, annotations_detectron2/{training,validation}/<key>.tif
                (uint16 trainIds, 65535 ignore), as MaskFormer's prepare_ade20k_full_sem_seg.py leaves them;
                ``gt_ext='tif'``, ``image_ext='jpg'``, ``ignore_label=65535``.
  cocostuff171  {train2017,val2017}/<key>.jpg, stuffthingmaps_detectron2/{train2017,val2017}/<key>.png
                (0..170, 255); ``ignore_label=255``.

imagefolder (torchvision ``ImageFolder('<out>/<split>')``, HF ``imagefolder``)
  with cls      <split>/<class folder>/<key>.jpg; the folder is the class's wnid (ImageNet, I21K) or its
                name made safe. ImageFolder numbers folders in sorted order; the manifest maps folders to
                the shard's class ids. A key that starts with its class folder is not repeated.
  image only    <split>/<key>.jpg (PASS and other unlabelled folders). Mask splits without cls are refused.

Extra masks (VOC saliency ``sal.png``) go to ``<role>/<split>/<key>.png`` in the generic layouts.
``datakit-export.json`` lists every exported split with its folders and framework settings.
The json member is not exported (COCO-20K instances: use its ``instances_train2014_sel20k.json``).

Writes are atomic and resumable; a file that exists with other bytes is refused unless
``overwrite``, which replaces only files the export itself writes; keys with ``..``, absolute paths
or other tricks are refused (``paths``).
"""

from .layouts import LAYOUTS, SplitLayout, plan_split
from .run import ExportOptions, ExportReport, SplitExport, export

__all__ = ["LAYOUTS", "ExportOptions", "ExportReport", "SplitExport", "SplitLayout", "export", "plan_split"]
