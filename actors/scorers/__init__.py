"""Scorers: GenEval's rules over detected objects, and the detectors that feed them."""
