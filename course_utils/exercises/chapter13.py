"""Chapter 13's exercises: patches as tokens, an adaLN-Zero sub-layer, SD3's joint attention, SD3's training noise
levels.

Each check compares the learner's code with diffusers: the unpatchify of ``DiTTransformer2DModel`` and
``SD3Transformer2DModel`` (written out below, as they do it), ``AdaLayerNormZeroSingle``, an ``Attention`` with
``JointAttnProcessor2_0`` (SD3's joint attention) and ``FlowMatchEulerDiscreteScheduler``'s table of shifted levels.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from . import Verdict, checked, right, two_values_each, wrong, wrong_shape

PATCH_CASES = (((2, 3, 8, 8), 2), ((2, 3, 8, 8), 4), ((1, 4, 6, 4), 2))  # the last one is not square


def _unpatchify(tokens: torch.Tensor, h: int, w: int, p: int, c: int) -> torch.Tensor:
    """diffusers' unpatchify (DiTTransformer2DModel, SD3Transformer2DModel): tokens (n, h*w, p*p*c) -> (n, c, h*p, w*p)
    for h x w patches."""
    n = tokens.shape[0]
    return torch.einsum("nhwpqc->nchpwq", tokens.reshape(n, h, w, p, p, c)).reshape(n, c, h * p, w * p)


def _patches(x: torch.Tensor, p: int, order: tuple[int, ...]) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // p, p, w // p, p).permute(order).reshape(n, (h // p) * (w // p), p * p * c)


def _match(got: torch.Tensor, want: torch.Tensor) -> list[int] | None:
    """For each token of ``got``, the token of ``want`` holding the same numbers (in any order), or None."""
    g, w = got.sort(-1).values, want.sort(-1).values
    where = []
    for i in range(g.shape[1]):
        hits = ((g[:, i : i + 1] - w).abs().amax(-1) < 1e-6).all(0).nonzero().flatten().tolist()
        if not hits:
            return None
        where.append(hits[0])
    return where


@checked
def check_to_tokens(to_tokens: Callable) -> Verdict:
    """Exercise 1: ``to_tokens(x, p)`` turns (N, C, H, W) into (N, (H/p)(W/p), p·p·C) tokens, one per p x p patch in
    row-major order, each flattened as (row in patch, column in patch, channel): the layout diffusers' unpatchify
    turns back into x. Tried on random tensors of shape (2, 3, 8, 8) at p = 2 and 4, and (1, 4, 6, 4) at p = 2."""
    generator = torch.Generator().manual_seed(0)
    for shape, p in PATCH_CASES:
        x = torch.randn(shape, generator=generator)
        n, c, h, w = shape
        want = _patches(x, p, (0, 2, 4, 3, 5, 1))
        got = to_tokens(x.clone(), p)
        where_en, where_zh = f"to_tokens(x, {p}) on x of shape {shape}", f"对形状为 {shape} 的 x，to_tokens(x, {p})"
        if (off := wrong_shape(got, want, where_en, where_zh + " ")) is not None:
            return off
        got = got.detach().float().cpu()
        if torch.allclose(_unpatchify(got, h // p, w // p, p, c), x, atol=1e-6):
            continue
        where = _match(got, want)
        if where is None:
            return wrong(f"{where_en}: a token should hold one {p}x{p} patch, all {c} channels of it; yours mix "
                         "numbers from different patches (a reshape without a permute cuts rows of pixels, not "
                         "patches)",
                         f"{where_zh}：一个 token 应装着一个 {p}x{p} 图块的全部 {c} 个通道；你的 token 混进了"
                         "不同图块的数值（只 reshape 不 permute，切出来的是像素行，而不是图块）")
        in_order = where == list(range(len(where)))
        if not in_order:
            patch_en = (f"{where_en}: your tokens are the right patches in another order: row-major, the patches of "
                        "the top row from left to right first, as unpatchify's reshape(n, h/p, w/p, …) reads them")
            patch_zh = (f"{where_zh}：你的 token 是对的图块，但顺序不对：应按行优先排列，先是最上面一行图块、"
                        "从左到右，unpatchify 的 reshape(n, h/p, w/p, …) 就是这样读的")
            if not torch.allclose(got, want[:, where], atol=1e-6):
                patch_en += "; and within each patch the numbers are out of order too (channel last)"
                patch_zh += "；而且每个图块内部的数值顺序也不对（通道应在最后）"
            return wrong(patch_en, patch_zh)
        channel_first = torch.allclose(got, _patches(x, p, (0, 2, 4, 1, 3, 5)), atol=1e-6)
        return wrong(f"{where_en}: each token holds the right numbers in the wrong order within its patch"
                     + (", channel first (c, row, column)" if channel_first else "")
                     + ": flatten each patch as (row in patch, column in patch, channel), channel last, the order "
                     "diffusers' unpatchify reads back (permute to (n, h/p, w/p, p, p, c) before the last reshape)",
                     f"{where_zh}：每个 token 装的数值是对的，但在图块内部的顺序不对"
                     + ("，通道在前 (c, 行, 列)" if channel_first else "")
                     + "：每个图块应按 (块内行, 块内列, 通道) 展平，通道在最后，这正是 diffusers 的 unpatchify "
                     "读回的顺序（最后一次 reshape 之前先 permute 成 (n, h/p, w/p, p, p, c)）")
    return right("your tokens are diffusers' layout: its unpatchify gives x back exactly, at p = 2 and 4, and for a "
                 "6 x 4 image too",
                 "你的 token 就是 diffusers 的排列：它的 unpatchify 能把 x 原样还原，p = 2 和 4 时都是，"
                 "6 x 4 的图像也一样")


WIDTH, TOKENS = 16, 6


def _sublayer_parts(zero: bool) -> tuple[torch.Tensor, torch.Tensor, nn.Linear, nn.Module]:
    torch.manual_seed(0)
    x, c = torch.randn(2, TOKENS, WIDTH), torch.randn(2, WIDTH)
    modulation = nn.Linear(WIDTH, 3 * WIDTH)
    sublayer = nn.Sequential(nn.Linear(WIDTH, 2 * WIDTH), nn.GELU(), nn.Linear(2 * WIDTH, WIDTH))
    if zero:
        nn.init.zeros_(modulation.weight)
        nn.init.zeros_(modulation.bias)
    return x, c, modulation, sublayer


def _variant(x, c, modulation, sublayer, scale_plus_one=True, norm=True, silu=True, gate=True, order=(0, 1, 2)):
    """The adaLN-Zero sub-layer, or one of the usual slips in it."""
    chunks = modulation(torch.nn.functional.silu(c) if silu else c).chunk(3, dim=1)
    shift, scale, gated = (chunks[i] for i in order)
    h = torch.nn.functional.layer_norm(x, (x.shape[-1],), eps=1e-6) if norm else x
    h = h * ((1 + scale[:, None]) if scale_plus_one else scale[:, None]) + shift[:, None]
    return x + (gated[:, None] if gate else 1) * sublayer(h)


@checked
def check_adaln_zero_sublayer(adaln_zero_sublayer: Callable) -> Verdict:
    """Exercise 2: ``adaln_zero_sublayer(x, c, modulation, sublayer)`` is x + gate·sublayer(LayerNorm(x)·(1 + scale)
    + shift) with (shift, scale, gate) = modulation(silu(c)).chunk(3): with a zero-initialised modulation it
    returns x, with a random one it equals diffusers' ``AdaLayerNormZeroSingle`` feeding the sub-layer."""
    from diffusers.models.normalization import AdaLayerNormZeroSingle

    x, c, modulation, sublayer = _sublayer_parts(zero=True)
    with torch.no_grad():
        got = adaln_zero_sublayer(x.clone(), c.clone(), modulation, sublayer)
    if (off := wrong_shape(got, x, "adaln_zero_sublayer", "adaln_zero_sublayer ")) is not None:
        return off
    got = got.detach().float()
    if not torch.allclose(got, x, atol=1e-6):
        if torch.allclose(got, _variant(x, c, modulation, sublayer, gate=False), atol=1e-5):
            return wrong("with the modulation zero-initialised your block does not return x: the gate is missing. "
                         "x + gate·f(…) with gate = 0 is what makes a new block the identity",
                         "调制层初始化为零时，你的模块没有返回 x：少了门控。正是 x + gate·f(…) 在 gate = 0 时"
                         "让新模块成为恒等映射")
        if torch.allclose(got, torch.zeros_like(x), atol=1e-6):
            return wrong("with the modulation zero-initialised your block returns zeros, not x: add the residual, "
                         "x + gate·f(…)",
                         "调制层初始化为零时，你的模块返回的是零而不是 x：请加上残差连接 x + gate·f(…)")
        return wrong(f"with the modulation zero-initialised your block is off from x by "
                     f"{float((got - x).abs().max()):.3g}: with gate = 0 a sub-layer x + gate·f(…) returns x",
                     f"调制层初始化为零时，你的模块与 x 相差 {float((got - x).abs().max()):.3g}："
                     "gate = 0 时子层 x + gate·f(…) 应返回 x")
    x, c, modulation, sublayer = _sublayer_parts(zero=False)
    norm = AdaLayerNormZeroSingle(WIDTH)
    norm.linear.load_state_dict(modulation.state_dict())
    with torch.no_grad():
        x_mod, gate = norm(x, emb=c)
        want = x + gate[:, None] * sublayer(x_mod)
        got = adaln_zero_sublayer(x.clone(), c.clone(), modulation, sublayer)
        slips = {
            "scale": _variant(x, c, modulation, sublayer, scale_plus_one=False),
            "norm": _variant(x, c, modulation, sublayer, norm=False),
            "silu": _variant(x, c, modulation, sublayer, silu=False),
            "order": _variant(x, c, modulation, sublayer, order=(1, 0, 2)),
        }
    if (off := wrong_shape(got, x, "adaln_zero_sublayer", "adaln_zero_sublayer ")) is not None:
        return off
    got = got.detach().float()
    if torch.allclose(got, want, atol=1e-4):
        return right("your sub-layer equals diffusers' AdaLayerNormZeroSingle feeding the sub-layer, and with the "
                     "modulation zero-initialised it returns x: a new block starts as the identity",
                     "你的子层与 diffusers 的 AdaLayerNormZeroSingle 加上子层的结果一致；调制层初始化为零时它返回 x："
                     "新模块一开始就是恒等映射")
    off = float((got - want).abs().max())
    if torch.allclose(got, slips["scale"], atol=1e-4):
        return wrong("you multiply the normalised tokens by scale, not by 1 + scale. Near a zero modulation they "
                     "would then be wiped out instead of left as they are: the zero-initialised block is the identity "
                     "only thanks to its gate, and its sub-layer would start learning from inputs of zeros",
                     "你把归一化后的 token 乘以了 scale，而不是 1 + scale。调制接近零时，它们会被抹成零，"
                     "而不是保持原样：零初始化的模块之所以是恒等映射只靠门控，它的子层将从全零的输入开始学习")
    if torch.allclose(got, slips["norm"], atol=1e-4):
        return wrong("you modulate x itself: modulate LayerNorm(x) (without affine weights: the modulation is them)",
                     "你调制的是 x 本身：应调制 LayerNorm(x)（不带仿射参数：调制就起了它们的作用）")
    if torch.allclose(got, slips["silu"], atol=1e-4):
        return wrong("the modulation reads c itself: DiT (and diffusers) feed it silu(c)",
                     "调制层读的是 c 本身：DiT（以及 diffusers）喂给它的是 silu(c)")
    if torch.allclose(got, slips["order"], atol=1e-4):
        return wrong("shift and scale are swapped: the modulation's output chunks are (shift, scale, gate), in that "
                     "order",
                     "shift 和 scale 写反了：调制层输出切成的三块依次是 (shift, scale, gate)")
    return wrong(f"with a random modulation your sub-layer is off by {off:.3g} from x + gate·f(LayerNorm(x)·(1 + "
                 "scale) + shift), with (shift, scale, gate) = modulation(silu(c)).chunk(3, dim=1)",
                 f"调制层随机初始化时，你的子层与 x + gate·f(LayerNorm(x)·(1 + scale) + shift) 相差 {off:.3g}，"
                 "其中 (shift, scale, gate) = modulation(silu(c)).chunk(3, dim=1)")


HEADS, IMAGE_TOKENS, TEXT_TOKENS, ATTENTION_WIDTH = 4, 16, 5, 32


def _attention_parts() -> tuple[torch.Tensor, torch.Tensor, tuple[nn.Linear, ...], tuple[nn.Linear, ...]]:
    torch.manual_seed(0)
    image, text = torch.randn(2, IMAGE_TOKENS, ATTENTION_WIDTH), torch.randn(2, TEXT_TOKENS, ATTENTION_WIDTH)
    image_qkv = tuple(nn.Linear(ATTENTION_WIDTH, ATTENTION_WIDTH) for _ in range(3))
    text_qkv = tuple(nn.Linear(ATTENTION_WIDTH, ATTENTION_WIDTH) for _ in range(3))
    return image, text, image_qkv, text_qkv


def _diffusers_joint(image, text, image_qkv, text_qkv, heads) -> tuple[torch.Tensor, torch.Tensor]:
    """SD3's joint attention as diffusers runs it, its two output projections set to the identity."""
    from diffusers.models.attention_processor import Attention, JointAttnProcessor2_0

    width = image.shape[-1]
    attn = Attention(query_dim=width, added_kv_proj_dim=width, dim_head=width // heads, heads=heads, out_dim=width,
                     context_pre_only=False, bias=True, processor=JointAttnProcessor2_0())
    mine = (attn.to_q, attn.to_k, attn.to_v, attn.add_q_proj, attn.add_k_proj, attn.add_v_proj)
    for theirs, given in zip(mine, (*image_qkv, *text_qkv), strict=True):
        theirs.load_state_dict(given.state_dict())
    for out in (attn.to_out[0], attn.to_add_out):
        nn.init.eye_(out.weight)
        nn.init.zeros_(out.bias)
    return attn(hidden_states=image, encoder_hidden_states=text)


def _attend(queries, keys, values, heads) -> torch.Tensor:
    split = [t.unflatten(-1, (heads, -1)).transpose(1, 2) for t in (queries, keys, values)]
    return torch.nn.functional.scaled_dot_product_attention(*split).transpose(1, 2).flatten(2)


def _qkv(tokens, projections) -> list[torch.Tensor]:
    return [proj(tokens) for proj in projections]


def _joint_slips(image, text, image_qkv, text_qkv, heads) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """What the usual slips return: (image_out, text_out)."""
    qi, ki, vi = _qkv(image, image_qkv)
    qt, kt, vt = _qkv(text, text_qkv)
    joint = [torch.cat(pair, dim=1) for pair in ((qi, qt), (ki, kt), (vi, vt))]
    slips = {"separate": (_attend(qi, ki, vi, heads), _attend(qt, kt, vt, heads)),
             "cross": (_attend(qi, kt, vt, heads), _attend(qt, ki, vi, heads)),
             "one head": _attend(*joint, 1).split([image.shape[1], text.shape[1]], dim=1)}
    for name, shared in (("image projections", image_qkv), ("text projections", text_qkv)):
        both = [torch.cat(pair, dim=1) for pair in zip(_qkv(image, shared), _qkv(text, shared), strict=True)]
        slips[name] = _attend(*both, heads).split([image.shape[1], text.shape[1]], dim=1)
    return slips


@checked
def check_joint_attention(joint_attention: Callable) -> Verdict:
    """Exercise 3: ``joint_attention(image, text, image_qkv, text_qkv, heads)`` -> (image_out, text_out): each stream
    through its own (to_q, to_k, to_v), one softmax attention over all image and text tokens with ``heads`` heads,
    split back; equal to diffusers' ``Attention`` with ``JointAttnProcessor2_0`` (SD3's) without its output
    projections, on 16 image and 5 text tokens of width 32 with 4 heads."""
    image, text, image_qkv, text_qkv = _attention_parts()
    with torch.no_grad():
        want = _diffusers_joint(image, text, image_qkv, text_qkv, HEADS)
        out = joint_attention(image.clone(), text.clone(), image_qkv, text_qkv, HEADS)
        slips = _joint_slips(image, text, image_qkv, text_qkv, HEADS)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        return wrong("joint_attention should return two tensors, (image_out, text_out)",
                     "joint_attention 应返回两个张量 (image_out, text_out)")
    if all(hasattr(o, "shape") for o in out) and tuple(out[0].shape) == tuple(want[1].shape) \
            and tuple(out[1].shape) == tuple(want[0].shape):
        return wrong("you return (text_out, image_out): return (image_out, text_out), in the order of the inputs "
                     "(diffusers' attention returns the image's first too)",
                     "你返回的是 (text_out, image_out)：请按输入的顺序返回 (image_out, text_out)"
                     "（diffusers 的注意力也是先返回图像的）")
    for got, theirs, en, zh in zip(out, want, ("image_out", "text_out"), ("image_out ", "text_out "), strict=True):
        if (off := wrong_shape(got, theirs, en, zh)) is not None:
            return off
    got = [o.detach().float() for o in out]

    def same(pair) -> bool:
        return all(torch.allclose(g, w, atol=1e-5) for g, w in zip(got, pair, strict=True))

    if same(want):
        return right("your joint attention equals SD3's in diffusers (Attention with JointAttnProcessor2_0): every "
                     "image and text token attends to all 21 tokens, each stream through its own projections",
                     "你的联合注意力与 diffusers 中 SD3 的一致（Attention 加 JointAttnProcessor2_0）："
                     "每个图像 token 和文本 token 都关注全部 21 个 token，两路各用自己的投影")
    if same(slips["separate"]):
        return wrong("your image tokens attend only to image tokens and your text tokens only to text tokens: the "
                     "two streams never see each other. Concatenate the queries, keys and values of both along the "
                     "token axis and run one attention over all of them",
                     "你的图像 token 只关注图像 token，文本 token 只关注文本 token：两路互相看不见。"
                     "请把两路的 query、key、value 沿 token 轴拼接起来，在全部 token 上做一次注意力")
    if same(slips["cross"]):
        return wrong("your image tokens attend only to the text and your text tokens only to the image (cross-"
                     "attention, as in SD 1's U-Net): in joint attention every token attends to all tokens of both "
                     "streams, its own included",
                     "你的图像 token 只关注文本，文本 token 只关注图像（交叉注意力，就像 SD 1 的 U-Net）："
                     "在联合注意力里，每个 token 都关注两路的全部 token，包括自己这一路的")
    for name, en, zh in (("image projections", "image", "图像"), ("text projections", "text", "文本")):
        if same(slips[name]):
            return wrong(f"both streams go through the {en}'s projections: in MM-DiT each stream has its own "
                         "to_q, to_k and to_v (image_qkv for the image tokens, text_qkv for the text tokens); only "
                         "the attention is shared",
                         f"两路都用了{zh}的投影：MM-DiT 里每一路都有自己的 to_q、to_k、to_v（图像 token 用 image_qkv，"
                         "文本 token 用 text_qkv）；共享的只有注意力本身")
    if same(slips["one head"]):
        return wrong(f"you attend with one head over the whole width: split the width into {HEADS} heads of "
                     f"{ATTENTION_WIDTH // HEADS} (unflatten the last axis, attention per head, then flatten back)",
                     f"你用一个头在整个宽度上做注意力：请把宽度分成 {HEADS} 个头，每个头 {ATTENTION_WIDTH // HEADS} 维"
                     "（展开最后一个轴，每个头各做注意力，再拼回去）")
    off = max(float((g - w).abs().max()) for g, w in zip(got, want, strict=True))
    return wrong(f"your outputs are off by {off:.3g} from diffusers' joint attention: softmax(q·kᵀ/√d)·v per head, "
                 f"d = {ATTENTION_WIDTH // HEADS}, over the image and text tokens together",
                 f"你的输出与 diffusers 的联合注意力相差 {off:.3g}：每个头上 softmax(q·kᵀ/√d)·v，"
                 f"d = {ATTENTION_WIDTH // HEADS}，在图像和文本 token 合在一起上计算")


@checked
def check_sd3_noise_level(sd3_noise_level: Callable) -> Verdict:
    """Exercise 4: ``sd3_noise_level(u, shift)`` -> (sigma, timestep) for training draws ``u`` in (0, 1): the entry
    floor(u·1000) of ``FlowMatchEulerDiscreteScheduler(shift=shift)``'s ``sigmas`` and ``timesteps``, for 64 draws
    (the two ends of the table among them) at shift 1 and 3."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    generator = torch.Generator().manual_seed(0)
    index = torch.cat([torch.tensor([0, 999]), torch.randint(0, 1000, (62,), generator=generator)])
    u = (index + 0.1 + 0.8 * torch.rand(64, generator=generator)) / 1000  # none a hair from an entry's edge
    for shift in (1.0, 3.0):
        scheduler = FlowMatchEulerDiscreteScheduler(shift=shift)
        want_sigma, want_t = scheduler.sigmas[index].double(), scheduler.timesteps[index].double()
        pair, off = two_values_each(sd3_noise_level(u.clone(), shift), u, "sd3_noise_level", ("sigma", "timestep"))
        if off is not None:
            return off
        sigma, timestep = pair
        if not torch.allclose(sigma, want_sigma, atol=1e-5):
            i = int((sigma - want_sigma).abs().argmax())
            at_en = (f"at shift {shift:g}, for u = {float(u[i]):.4f} you give σ = {float(sigma[i]):.4f}, the "
                     f"scheduler's table has {float(want_sigma[i]):.4f} at index {int(index[i])}")
            at_zh = (f"shift 为 {shift:g} 时，对 u = {float(u[i]):.4f} 你给出 σ = {float(sigma[i]):.4f}，"
                     f"调度器的表在下标 {int(index[i])} 处是 {float(want_sigma[i]):.4f}")
            s = 1 - u.double()
            no_floor = shift * s / (1 + (shift - 1) * s)
            no_shift = 1 - index.double() / 1000
            reversed_table = shift * (1 - no_shift) / (1 + (shift - 1) * (1 - no_shift))
            if torch.allclose(sigma, no_floor, atol=1e-5):
                hint_en = ("you use s = 1 − u directly; SD3's script picks the index floor(u·1000) into the "
                           "scheduler's 1000 levels, so s = 1 − index/1000")
                hint_zh = ("你直接用了 s = 1 − u；SD3 的脚本先取下标 floor(u·1000)，查调度器的 1000 个噪声水平，"
                           "所以 s = 1 − index/1000")
            elif torch.allclose(sigma, no_shift, atol=1e-5):
                hint_en = "you give the unshifted level s; apply σ = shift·s / (1 + (shift − 1)·s) to it"
                hint_zh = "你给出的是没有平移的水平 s；还要对它套用 σ = shift·s / (1 + (shift − 1)·s)"
            elif torch.allclose(sigma, reversed_table, atol=1e-5):
                hint_en = "your table runs the wrong way: index 0 is pure noise, σ = 1, so s = 1 − index/1000"
                hint_zh = "你的表方向反了：下标 0 是纯噪声 σ = 1，所以 s = 1 − index/1000"
            else:
                hint_en = "σ = shift·s / (1 + (shift − 1)·s) with s = 1 − floor(u·1000)/1000"
                hint_zh = "σ = shift·s / (1 + (shift − 1)·s)，其中 s = 1 − floor(u·1000)/1000"
            return wrong(f"{at_en}: {hint_en}", f"{at_zh}：{hint_zh}")
        if not torch.allclose(timestep, want_t, atol=1e-2):
            i = int((timestep - want_t).abs().argmax())
            in_unit = torch.allclose(timestep, want_sigma, atol=1e-5)
            return wrong(f"at shift {shift:g} your σ are right, but for u = {float(u[i]):.4f} your timestep is "
                         f"{float(timestep[i]):.4g}, the scheduler's {float(want_t[i]):.4g}: the timestep is 1000·σ"
                         + (", on the scale of the 1000 training steps the transformer reads" if in_unit else ""),
                         f"shift 为 {shift:g} 时你的 σ 是对的，但对 u = {float(u[i]):.4f} 你的时间步是 "
                         f"{float(timestep[i]):.4g}，调度器的是 {float(want_t[i]):.4g}：时间步是 1000·σ"
                         + ("，即 transformer 读取的 1000 个训练步的尺度" if in_unit else ""))
    return right(f"your σ and timesteps are FlowMatchEulerDiscreteScheduler's table entries at shift 1 and 3, for "
                 f"{len(u)} draws: shift 3 moves every level between 0 and 1 towards noise",
                 f"在 shift 为 1 和 3 时，{len(u)} 个抽样的 σ 和时间步都与 FlowMatchEulerDiscreteScheduler 的表一致："
                 "shift 3 把 0 和 1 之间的每个水平都推向噪声一端")
