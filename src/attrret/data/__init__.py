"""Track-2 readers/writers, dataset records, image loading, datasets and the synthetic generator."""
