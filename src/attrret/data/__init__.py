"""Track-2 readers/writers, dataset records, splits, image loading and the synthetic generator.

Model inputs (crops, augmentation, tensors) live with the classifiers: :mod:`attrret.classifiers.preprocess`.
"""
