"""Training recipes, each a class with the lifecycle setup → train → save → cleanup and a ``run`` driving it:
``finetune`` (ReVIOSa's own training) and ``pretrain`` (the tiny model's stand-in for pretrained checkpoints)."""
