"""ReVIOSa: InternVL-2.5 + SAM2 with ``[SEG_ACT]``/``[SEG_TAR]`` tokens and the attention-mask loss.

Entry points: ``config.ModelConfig.from_yaml("tiny" | "1b" | "4b" | path)``, ``checkpoint.build_model``,
``checkpoint.save_pretrained`` / ``checkpoint.from_pretrained`` (folder or ``s3://``), ``batch.build_sample`` /
``batch.collate`` for training batches, ``modeling.ReviosaModel.forward`` (losses), ``inference.predict_video``.
"""
