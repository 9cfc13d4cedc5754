"""KFP v2 pipelines over the components in ``components/``: annotation, training + evaluation, end to end."""
