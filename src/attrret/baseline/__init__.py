"""Baselines that attrret's decoupled method is measured against.

``clip``: a CLIP-style dual encoder (open_clip text transformer + the same image backbone as
attrret's classifiers) trained contrastively on the same captions, ranking by cosine
similarity. It exists so the method's claim, "decoupled attribute classifiers beat a joint
text-image embedding on this task", can be tested side by side (``bench/quality.py``).

Nothing heavy is imported here: import ``attrret.baseline.clip`` (torch, timm, open_clip).
"""
