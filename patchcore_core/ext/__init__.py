"""Beyond the paper's single model on one machine: approximate nearest-neighbour
indexes, the ensemble of backbones, the composable (sharded) greedy coreset.

Imports: ``util`` and ``pipeline``.
"""
