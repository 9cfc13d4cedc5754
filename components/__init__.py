"""Thin KFP v2 lightweight components, one per step; each calls ``reviosa.pipelines.steps`` in the project image."""
