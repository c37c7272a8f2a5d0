"""Per-attribute image classifiers: backbones, partial freezing, trunk cache, training, inference.

Public entry points (import the submodules; this package imports nothing heavy so that
``attrret --help`` stays instant):

- :mod:`attrret.classifiers.backbones` -- ``create_backbone(spec)``: one factory for the default
  offline EfficientNet-Lite0, ``timm:<name>``, ``open_clip:<arch>/<tag>`` and local checkpoints.
- :mod:`attrret.classifiers.train` -- ``TrainConfig``, ``train_tasks(config)``.
- :mod:`attrret.classifiers.engine` -- ``Engine.build(members)``: the one definition of images ->
  probabilities (predict, sharded predict, ``attrret attributes`` and the ONNX export run it);
  ``predict_probs(model_dirs, images)``: the engine of one set of task models, per task.
- :mod:`attrret.classifiers.checkpoint` -- ``load_checkpoint(path)``, ``list_model_dirs(workdir)``.
"""
