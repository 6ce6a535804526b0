"""Datasets, domains, behaviour policies, collection and oracle replay."""

from xcurate.datasets.domains import Domain, get_domain, list_domains
from xcurate.datasets.transitions import TransitionDataset

__all__ = ["Domain", "TransitionDataset", "get_domain", "list_domains"]
