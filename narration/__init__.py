"""Video-narration pretraining and zero-shot recognition (``cprclip train task=narration``,
issue 20 part 2; docs/narration.md).

- ``narration.config``: ``NarrationConfig``, the ``[narration]`` section;
- ``narration.data``: feature rows joined with their take's narration file, text embeddings;
- ``narration.model``: the trainable projection of per-segment features into the text space;
- ``narration.losses``: multi-positive InfoNCE and the gather that keeps gradients (DDP);
- ``narration.train``: the loop on the run convention (resume, metrics.jsonl, TensorBoard);
- ``narration.zeroshot``: scores against the 14 class prompts, top-1, macro F1, composite mAP.
"""
