"""The assistant people use: one :class:`Assistant` that loads a run once and judges takes,
``cprclip predict`` (:mod:`assist.cli`) and the web page ``cprclip serve`` (:mod:`assist.server`).

    from assist import Assistant
    a = Assistant.load("runs/cpr_clip_plus")
    p = a.analyse(["take_v1.mp4", "take_v3.mp4"], [1, 3])
"""
from assist.assistant import Assistant, Detection, PredictConfig, Prediction, PredictError

__all__ = ["Assistant", "Detection", "PredictConfig", "Prediction", "PredictError"]
