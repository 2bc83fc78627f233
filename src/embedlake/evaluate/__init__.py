"""Evaluation: BEIR-layout datasets, retrieval metrics, ANN recall, the BM25 baseline, benchmarks."""
