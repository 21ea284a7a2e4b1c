"""Class texts and prompt templates turned into text classifiers."""

from .classifier import TextEmbeddingCache, build_classifier, encode_prompts
from .descriptions import fill_prompts, read_descriptions, short_name
from .templates import (ACTIONCLIP_TEMPLATES, FROSTER_TEMPLATES, OPEN_VCLIP_TEMPLATES, TEMPLATE_SETS,
                        TEXT4VIS_TEMPLATES, check_labels, parse_labels, resolve_templates)

__all__ = [
    "ACTIONCLIP_TEMPLATES", "FROSTER_TEMPLATES", "OPEN_VCLIP_TEMPLATES", "TEMPLATE_SETS", "TEXT4VIS_TEMPLATES",
    "TextEmbeddingCache", "build_classifier", "check_labels", "encode_prompts", "fill_prompts",
    "parse_labels", "read_descriptions", "resolve_templates", "short_name",
]
