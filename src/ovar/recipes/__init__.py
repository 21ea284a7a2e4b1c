"""Training recipes: one module per method, all implementing :class:`Recipe`."""

from ..train.recipe import ParamGroup, Recipe, Trainable
from .registry import get_recipe, list_recipes, load_recipe, register_recipe

__all__ = ["ParamGroup", "Recipe", "Trainable", "get_recipe", "list_recipes", "load_recipe", "register_recipe"]
