"""curate: active learning and dataset curation.

Ingest image folders into an index database, build latent spaces, select what to
label with k-center greedy, score novelty and sync with Label Studio.
"""

__version__ = "0.1.0"
