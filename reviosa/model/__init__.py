"""ReVIOSa: InternVL-2.5 + SAM2 with ``[SEG_ACT]``/``[SEG_TAR]`` tokens and the attention-mask loss.

Entry points: ``config.ModelConfig.from_yaml("tiny" | "1b" | "4b" | path)``; ``modeling.ReviosaModel``, the one
place a model is built: ``from_config``, ``from_pretrained`` (folder or ``s3://``) and ``save_pretrained``, with the
file format and its I/O in ``checkpoint``; ``batch.build_sample`` / ``batch.collate`` for training batches,
``ReviosaModel.forward`` (losses), ``inference.predict_video``. Errors shared across modules are in ``errors``.
Foreign checkpoints: ``convert`` (original OpenGVLab InternVL-2.5 → transformers) and ``official`` (a ReVIOSa of the
official code → a reviosa checkpoint carrying its merged base).
"""
