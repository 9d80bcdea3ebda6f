"""Sparse training: masks and their one shared update (sparsifier), methods, layer densities, schedules."""

from .distributions import layer_densities
from .methods import METHODS, Method, get_method
from .schedules import UpdateSchedule, gmp_sparsity
from .sparsifier import Sparsifier, drop_and_grow, random_mask

__all__ = ["METHODS", "Method", "Sparsifier", "UpdateSchedule", "drop_and_grow", "get_method", "gmp_sparsity",
           "layer_densities", "random_mask"]
