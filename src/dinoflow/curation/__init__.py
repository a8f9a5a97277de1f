"""Data curation (DINOv2 §3; Vo et al. 2024): embeddings of the validated images, near-duplicate
removal, evaluation decontamination and balanced sampling by hierarchical k-means.

Pure core: numpy, torch, faiss and PIL only. The ``curate`` pipeline is its Kedro adapter.
"""
