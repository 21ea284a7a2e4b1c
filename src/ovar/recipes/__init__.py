"""Training recipes: one module per method, all implementing :class:`Recipe`."""

from .base import ParamGroup, Recipe, get_recipe, list_recipes, load_recipe, register_recipe

__all__ = ["ParamGroup", "Recipe", "get_recipe", "list_recipes", "load_recipe", "register_recipe"]
