"""An independent, functional computation of OpenAI's CLIP (ViT) from a raw state dict.

Written from the architecture's definition, sharing no code with open_clip, so tests can
check that weights loaded through ovar give OpenAI's embeddings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _layer_norm(x, sd, prefix):
    return F.layer_norm(x, x.shape[-1:], sd[prefix + ".weight"], sd[prefix + ".bias"], eps=1e-5)


def _attention(x, sd, prefix, mask=None):
    width = x.shape[-1]
    heads = max(1, width // 64)
    q, k, v = (x @ sd[prefix + ".in_proj_weight"].t() + sd[prefix + ".in_proj_bias"]).chunk(3, dim=-1)
    split = lambda t: t.view(t.shape[0], t.shape[1], heads, width // heads).transpose(1, 2)  # noqa: E731
    q, k, v = split(q), split(k), split(v)
    scores = q @ k.transpose(-1, -2) / math.sqrt(width // heads)
    if mask is not None:
        scores = scores + mask
    out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(x.shape)
    return out @ sd[prefix + ".out_proj.weight"].t() + sd[prefix + ".out_proj.bias"]


def _blocks(x, sd, prefix, mask=None):
    layers = len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})
    for i in range(layers):
        p = f"{prefix}{i}"
        x = x + _attention(_layer_norm(x, sd, p + ".ln_1"), sd, p + ".attn", mask)
        h = _layer_norm(x, sd, p + ".ln_2") @ sd[p + ".mlp.c_fc.weight"].t() + sd[p + ".mlp.c_fc.bias"]
        h = h * torch.sigmoid(1.702 * h)  # QuickGELU, as OpenAI trained with
        x = x + h @ sd[p + ".mlp.c_proj.weight"].t() + sd[p + ".mlp.c_proj.bias"]
    return x


@torch.no_grad()
def encode_image(sd: dict, images: torch.Tensor) -> torch.Tensor:
    sd = {k: v.float() for k, v in sd.items()}
    weight = sd["visual.conv1.weight"]
    x = F.conv2d(images, weight, stride=weight.shape[-1]).flatten(2).transpose(1, 2)
    cls = sd["visual.class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + sd["visual.positional_embedding"]
    x = _layer_norm(x, sd, "visual.ln_pre")
    x = _blocks(x, sd, "visual.transformer.resblocks.")
    return _layer_norm(x[:, 0], sd, "visual.ln_post") @ sd["visual.proj"]


@torch.no_grad()
def encode_text(sd: dict, tokens: torch.Tensor) -> torch.Tensor:
    sd = {k: v.float() for k, v in sd.items()}
    x = sd["token_embedding.weight"][tokens] + sd["positional_embedding"]
    n = tokens.shape[1]
    causal = torch.full((n, n), float("-inf")).triu(1)
    x = _blocks(x, sd, "transformer.resblocks.", causal)
    x = _layer_norm(x, sd, "ln_final")
    return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ sd["text_projection"]


def random_openai_state_dict(seed: int = 0, vision_width: int = 128, vision_layers: int = 2, patch: int = 16,
                             image: int = 48, text_width: int = 64, text_layers: int = 2, embed: int = 32,
                             context: int = 77, vocab: int = 49408) -> dict[str, torch.Tensor]:
    """An OpenAI-layout state dict of random values (including OpenAI's metadata scalars)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape, s=0.05: torch.randn(*shape, generator=g) * s  # noqa: E731
    sd: dict[str, torch.Tensor] = {}
    grid = image // patch

    def blocks(prefix, width, layers):
        for i in range(layers):
            p = f"{prefix}{i}."
            sd[p + "attn.in_proj_weight"] = r(3 * width, width)
            sd[p + "attn.in_proj_bias"] = r(3 * width)
            sd[p + "attn.out_proj.weight"] = r(width, width)
            sd[p + "attn.out_proj.bias"] = r(width)
            sd[p + "ln_1.weight"] = 1 + r(width)
            sd[p + "ln_1.bias"] = r(width)
            sd[p + "mlp.c_fc.weight"] = r(4 * width, width)
            sd[p + "mlp.c_fc.bias"] = r(4 * width)
            sd[p + "mlp.c_proj.weight"] = r(width, 4 * width)
            sd[p + "mlp.c_proj.bias"] = r(width)
            sd[p + "ln_2.weight"] = 1 + r(width)
            sd[p + "ln_2.bias"] = r(width)

    sd["positional_embedding"] = r(context, text_width)
    sd["text_projection"] = r(text_width, embed, s=0.2)
    sd["logit_scale"] = torch.tensor(math.log(100.0))
    sd["visual.class_embedding"] = r(vision_width, s=0.5)
    sd["visual.positional_embedding"] = r(grid * grid + 1, vision_width, s=0.5)
    sd["visual.proj"] = r(vision_width, embed, s=0.2)
    sd["visual.conv1.weight"] = r(vision_width, 3, patch, patch)
    sd["visual.ln_pre.weight"] = 1 + r(vision_width)
    sd["visual.ln_pre.bias"] = r(vision_width)
    blocks("visual.transformer.resblocks.", vision_width, vision_layers)
    sd["visual.ln_post.weight"] = 1 + r(vision_width)
    sd["visual.ln_post.bias"] = r(vision_width)
    sd["token_embedding.weight"] = r(vocab, text_width, s=0.5)
    blocks("transformer.resblocks.", text_width, text_layers)
    sd["ln_final.weight"] = 1 + r(text_width)
    sd["ln_final.bias"] = r(text_width)
    sd["input_resolution"] = torch.tensor(image)
    sd["context_length"] = torch.tensor(context)
    sd["vocab_size"] = torch.tensor(vocab)
    return sd
