"""Annotation pipeline: the LLM/VLM stages that turn videos with mask tracks into an InterRVOS split.

Stage 0 mask tracks, 1 object descriptions, 2 referring expressions, 3 interactions, 4 interaction
expressions (the paper's Appendix D.1). Answers come from an OpenAI-compatible server or, for the
synthetic world, from its scene graph; every answer is validated, cached and written per video.
"""
