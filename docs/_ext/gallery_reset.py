"""Reset global state between gallery examples (used by ``docs/conf.py``).

Examples turn scikit-learn's metadata routing on and seed torch; each example
starts from scikit-learn's defaults and one torch thread, as when run alone.
"""

import sklearn
import torch


def reset_sklearn_and_torch(gallery_conf, fname):
    """Restore scikit-learn's global config and torch's thread count."""
    sklearn.set_config(enable_metadata_routing=False)
    torch.set_num_threads(1)
