"""Evaluation: J/F metrics exactly as the official DAVIS/MeViS code (:mod:`.metrics`), the prediction layout
(:mod:`.predictions`), the InterRVOS protocol (:mod:`.protocol`: ``evaluate_split`` -> ``EvaluationResult``)
and its outputs (:mod:`.report`)."""
