"""The embedded synthetic traffic-scene benchmark in Track-2 format (``attrret data synth``).

Procedurally rendered pedestrian and vehicle crops with every attribute group visibly drawn,
surveillance-like degradations, real attribute priors, Track-2 captions, and ground truth
under the Track-2 relevance rules. No downloads: NumPy and Pillow only.
"""

from attrret.data.synth.generate import MARKER, SynthConfig, SynthItem, SynthSummary, generate, marker_config, plan
from attrret.data.synth.pedestrian import render_pedestrian
from attrret.data.synth.relevance import relevant_sets
from attrret.data.synth.vehicle import brand_design, render_vehicle

__all__ = [
    "MARKER", "SynthConfig", "SynthItem", "SynthSummary", "generate", "marker_config", "plan",
    "render_pedestrian", "render_vehicle", "brand_design", "relevant_sets",
]
