"""An inference-only copy of open_clip's ViT image tower that runs ~1.3x (fp32) to 2.6x (bf16) faster.

open_clip's tower is written for training: `nn.MultiheadAttention`, QuickGELU as three separate
tensor ops, a strided convolution for the patch embedding. Measured on one core of an AMD EPYC
(ViT-B/32, batch 32, thread CPU time), against open_clip's own 127 ms per image in fp32:

| path                                            | fp32   | bf16  |
|-------------------------------------------------|--------|-------|
| open_clip as is                                 | 127 ms | 58 ms |
| plain ops + SDPA                                | 119 ms | 56 ms |
| + QuickGELU folded into the weights (one SiLU)  | 107 ms | 53 ms |
| + weights pre-packed for oneDNN, fused SiLU     |  90 ms | 48 ms |

What it does, all of it exact in real arithmetic:

- The patch embedding (a convolution with stride = kernel) is a reshape and one matrix product.
- QuickGELU is `x * sigmoid(1.702 x)` = `silu(1.702 x) / 1.702`: the 1.702 goes into the first MLP
  layer's weights and its inverse into the second's, leaving one SiLU that oneDNN fuses into the
  matrix product.
- Attention is `F.scaled_dot_product_attention` on the fused QKV projection.
- On CPU the linear weights are reordered once into oneDNN's blocked layout
  (`mkldnn._reorder_linear_weight`) and run through `mkldnn._linear_pointwise` with the bias and
  activation fused; where those ops are missing (other builds, GPUs) plain `F.linear` runs instead.
- `int8` (opt-in only): the linear layers use dynamic int8 quantization (`quantized.linear_dynamic`:
  per-batch activation scales, int8 weights); attention, norms and the rest stay fp32.

Towers with features this does not reproduce (attention pooling, layer scale, custom blocks, average
pooling, a patch-embedding bias) are refused by `unsupported_reason`, and the encoder then keeps
open_clip's own tower.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

QUICK_GELU_ALPHA = 1.702


def _has_mkldnn_linear() -> bool:
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


def unsupported_reason(visual: nn.Module) -> str | None:
    """Why `visual` cannot run on the fast path, or None when it can."""
    from model.open_clip_lite import transformer

    LayerNorm, QuickGELU = transformer.LayerNorm, transformer.QuickGELU
    ResidualAttentionBlock = transformer.ResidualAttentionBlock
    VisionTransformer = transformer.VisionTransformer

    if not isinstance(visual, VisionTransformer):
        return f"{type(visual).__name__} is not a ViT"
    checks = [
        (visual.conv1.bias is None, "patch embedding has a bias"),
        (tuple(visual.conv1.stride) == tuple(visual.conv1.kernel_size), "overlapping patches"),
        (getattr(visual, "attn_pool", None) is None, "attention pooling"),
        (getattr(visual, "pool_type", "tok") == "tok", "pooling other than the class token"),
        (not getattr(visual, "output_tokens", False), "token outputs"),
        (isinstance(visual.ln_pre, LayerNorm), "no pre-norm"),
        (isinstance(visual.ln_post, LayerNorm), "no post-norm"),
        (visual.proj is not None, "no projection"),
    ]
    for ok, what in checks:
        if not ok:
            return what
    for block in visual.transformer.resblocks:
        if type(block) is not ResidualAttentionBlock:
            return f"{type(block).__name__} blocks"
        if not (isinstance(block.ls_1, nn.Identity) and isinstance(block.ls_2, nn.Identity)):
            return "layer scale"
        if hasattr(block, "ln_1_kv"):
            return "cross attention"
        act = block.mlp.gelu
        if not (isinstance(act, QuickGELU) or (isinstance(act, nn.GELU) and act.approximate == "none")):
            return f"{type(act).__name__} activation"
        if not block.attn.batch_first or block.attn.in_proj_weight is None:
            return "unusual attention layout"
    return None


@dataclass(frozen=True)
class _Linear:
    """One linear layer in the form its backend wants (oneDNN-packed, int8-packed, or plain)."""

    weight: torch.Tensor | None  # plain or oneDNN-packed weight
    bias: torch.Tensor | None
    packed_int8: object | None = None


Norm = tuple[torch.Tensor, torch.Tensor, float]


@dataclass(frozen=True)
class _Block:
    """One residual attention block's weights, ready to run."""

    ln_1: Norm
    ln_2: Norm
    qkv: _Linear
    out: _Linear
    fc: _Linear
    proj: _Linear
    act: str  # "swish" (QuickGELU, folded) or "gelu"
    heads: int


class FastVisionTower:
    """Callable: normalised pixels (B, 3, S, S) float32 -> image features (B, d) float32 (not normalised).

    `dtype` is float32, bfloat16 or float16 (activations and weights); `int8=True` quantizes the
    linear layers (activations stay float32). Built once from an open_clip `VisionTransformer` on
    the target device; it holds its own copies of the weights.
    """

    def __init__(self, visual: nn.Module, *, dtype: torch.dtype, device: torch.device, int8: bool = False):
        reason = unsupported_reason(visual)
        if reason is not None:
            raise ValueError(f"fast path does not support this tower: {reason}")
        self.dtype = torch.float32 if int8 else dtype
        self.int8 = int8
        self.device = device
        self.mkldnn = device.type == "cpu" and not int8 and _has_mkldnn_linear() and self.dtype in (
            torch.float32,
            torch.bfloat16,
        )
        self.patch = int(visual.conv1.kernel_size[0])
        self.width = int(visual.conv1.out_channels)
        with torch.no_grad():
            self._build(visual)

    # ------------------------------------------------------------------------------------ building

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(device=self.device, dtype=self.dtype).contiguous()

    def _norm(self, norm: nn.LayerNorm) -> Norm:
        return (self._cast(norm.weight), self._cast(norm.bias), float(norm.eps))

    def _linear(self, weight: torch.Tensor, bias: torch.Tensor | None, rows_hint: int) -> _Linear:
        if self.int8:
            qweight = torch.quantize_per_tensor_dynamic(weight.detach().float(), torch.qint8, False)
            b = bias.detach().float().contiguous() if bias is not None else None
            return _Linear(None, None, torch.ops.quantized.linear_prepack(qweight, b))
        w = self._cast(weight)
        b = self._cast(bias) if bias is not None else None
        if self.mkldnn:
            w = torch.ops.mkldnn._reorder_linear_weight(w, rows_hint)
        return _Linear(w, b)

    def _build(self, visual: nn.Module) -> None:
        from model.open_clip_lite import transformer

        conv = visual.conv1.weight.detach()
        self.patch_weight = self._cast(conv.reshape(conv.shape[0], -1).t())  # (3*p*p, width)
        positional = visual.positional_embedding.detach()
        self.class_token = self._cast(visual.class_embedding.detach() + positional[0])
        self.positions = self._cast(positional[1:])
        self.ln_pre = self._norm(visual.ln_pre)
        self.ln_post = self._norm(visual.ln_post)
        self.proj = self._cast(visual.proj)
        rows = 32 * (self.positions.shape[0] + 1)  # a batch of 32 images: the serving batch size
        self.blocks: list[_Block] = []
        for block in visual.transformer.resblocks:
            fc_w, fc_b = block.mlp.c_fc.weight.detach().float(), block.mlp.c_fc.bias.detach().float()
            proj_w = block.mlp.c_proj.weight.detach().float()
            quick = isinstance(block.mlp.gelu, transformer.QuickGELU)
            if quick:  # x*sigmoid(a x) = silu(a x)/a: scale into c_fc, inverse into c_proj
                a = QUICK_GELU_ALPHA
                fc_w, fc_b, proj_w = fc_w * a, fc_b * a, proj_w / a
            attn = block.attn
            self.blocks.append(
                _Block(
                    ln_1=self._norm(block.ln_1),
                    ln_2=self._norm(block.ln_2),
                    qkv=self._linear(attn.in_proj_weight, attn.in_proj_bias, rows),
                    out=self._linear(attn.out_proj.weight, attn.out_proj.bias, rows),
                    fc=self._linear(fc_w, fc_b, rows),
                    proj=self._linear(proj_w, block.mlp.c_proj.bias, rows),
                    act="swish" if quick else "gelu",
                    heads=int(attn.num_heads),
                )
            )

    # ------------------------------------------------------------------------------------ running

    def _apply(self, layer: _Linear, x: torch.Tensor, act: str | None = None) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        if layer.packed_int8 is not None:
            y = torch.ops.quantized.linear_dynamic(flat, layer.packed_int8, True)
            y = _activate(y, act)
        elif self.mkldnn:
            assert layer.weight is not None
            if act is None:
                y = torch.ops.mkldnn._linear_pointwise(flat, layer.weight, layer.bias, "none", [], "")
            elif act == "swish":
                y = torch.ops.mkldnn._linear_pointwise(flat, layer.weight, layer.bias, "swish", [], "")
            else:
                y = torch.ops.mkldnn._linear_pointwise(flat, layer.weight, layer.bias, "gelu", [], "none")
        else:
            assert layer.weight is not None
            y = _activate(F.linear(flat, layer.weight, layer.bias), act)
        return y.view(*shape[:-1], y.shape[-1])

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self._forward(pixels.to(device=self.device, dtype=self.dtype))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        p = self.patch
        gh, gw = height // p, width // p
        patches = x.reshape(batch, channels, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5)
        tokens = patches.reshape(batch, gh * gw, channels * p * p) @ self.patch_weight + self.positions
        x = torch.cat([self.class_token.expand(batch, 1, -1), tokens], dim=1)
        d = self.width
        x = F.layer_norm(x, (d,), *self.ln_pre)
        length = x.shape[1]
        for block in self.blocks:
            h = F.layer_norm(x, (d,), *block.ln_1)
            qkv = self._apply(block.qkv, h)
            heads = block.heads
            q, k, v = qkv.view(batch, length, 3, heads, d // heads).permute(2, 0, 3, 1, 4).unbind(0)
            attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, length, d)
            x = x + self._apply(block.out, attended)
            h = F.layer_norm(x, (d,), *block.ln_2)
            h = self._apply(block.fc, h, block.act)
            x = x + self._apply(block.proj, h)
        pooled = F.layer_norm(x[:, 0], (d,), *self.ln_post)
        return (pooled @ self.proj).float()


def _activate(y: torch.Tensor, act: str | None) -> torch.Tensor:
    if act == "swish":
        return F.silu(y, inplace=True)
    if act == "gelu":
        return F.gelu(y)
    return y
