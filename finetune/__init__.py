"""Backbone fine-tuning (``cprclip finetune``): train a TSN/TSM recognizer on the single-class
videos, so that ``cprclip extract`` (``checkpoint = "auto"``) extracts features that see the
errors. CPR-Coach does the same before it extracts features; no ImageNet/Kinetics weights can
be downloaded here, and randomly initialised features barely see the errors.

Task: the single-class videos of the train split (every camera view is its own sample),
14-way cross-entropy; validation on the single-class videos of the val split (top-1, mean
class accuracy, confusion matrix). One run per stream (``modalities`` "rgb", "flow",
"skeleton", in turn) writes ``<finetune_dir>/<dataset>/<backbone>-<modality>/``:

- ``checkpoint.safetensors``: the recognizer's state_dict, keys exactly as
  :func:`extract.backbones.build_recognizer` makes them; safetensors metadata holds the
  resolved config JSON, the manifest sha256, backbone, modality, the machine's choices
  (``runtime``) and a fingerprint of everything that determines the weights. A rerun with the
  same fingerprint does nothing.
- ``state.pt``: the resumable training state (model, optimizer, grad scaler, epoch, torch RNG,
  the run's identity), written after every epoch with ``torch.save`` of tensors and plain
  values only, read back with ``torch.load(weights_only=True)``.
- ``metrics.jsonl``, ``tensorboard/`` (the run convention of :mod:`pipeline.runs`),
  ``confusion.png`` / ``confusion.json`` (final val confusion matrix), ``config.json``.

Modules: ``config`` (FinetuneConfig), ``data`` (frames, clips, crops, order), ``skeleton`` (the
skeleton stream's clips and augmentation, for ST-GCN), ``model`` (the network wrapper,
BatchNorm modes), ``weights`` (init, conversions, fingerprint, files),
``metrics`` (confusion matrix), ``loop`` (build, resume, epoch, finish), ``cli``.
"""
