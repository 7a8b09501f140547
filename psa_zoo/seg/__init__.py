"""Semantic segmentation: joint image + mask transforms (:mod:`.transforms`), samples for the engine
(:mod:`.dataset`), inference modes — whole image, sliding window, multi-scale + flip (:mod:`.inference`) —,
the model's mIoU on a dataset (:mod:`.evaluate`) and :class:`Segmenter` (:mod:`.predictor`)."""

from .dataset import SegmentationSamples
from .evaluate import evaluate_seg_model
from .inference import num_windows, predict_probabilities, sliding_windows
from .predictor import Segmenter, SegPrediction
from .transforms import SegEvalTransform, SegTrainTransform

__all__ = [
    "SegEvalTransform",
    "SegPrediction",
    "SegTrainTransform",
    "SegmentationSamples",
    "Segmenter",
    "evaluate_seg_model",
    "num_windows",
    "predict_probabilities",
    "sliding_windows",
]
