"""Training recipes: one module per method, all implementing :class:`Recipe`."""

from ..train.recipe import ParamGroup, Recipe
from .registry import get_recipe, list_recipes, load_recipe, register_recipe

__all__ = ["ParamGroup", "Recipe", "get_recipe", "list_recipes", "load_recipe", "register_recipe"]
