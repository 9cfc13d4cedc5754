"""Training ReVIOSa with DeepSpeed: ``config.TrainConfig`` (YAML), ``trainer.train``, data in ``data``,
MLflow in ``tracking``, in-loop InterRVOS validation in ``validation``.

Run ``reviosa train --config cfg.yaml [--resume]`` (one process) or ``torchrun --nproc_per_node N -m
reviosa.train --config cfg.yaml`` (data parallel, ZeRO-2 by default).
"""
