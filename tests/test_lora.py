"""course_utils.lora: LoRA adapters leave the base model untouched until merged."""

import torch
from diffusers import DDPMScheduler, UNet2DModel

from course_utils.diffusion import train_ddpm
from course_utils.lora import add_lora


def test_lora_leaves_the_base_untouched_until_merged_and_merging_adds_the_adapters(tmp_path, seeded_unet):
    from peft import PeftModel

    base = seeded_unet()
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = add_lora(base, rank=2)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    data = [torch.rand(8, 1, 8, 8) * 2 - 1]
    optimizer = torch.optim.AdamW([p for p in base.parameters() if p.requires_grad], lr=1e-2)
    train_ddpm(base, DDPMScheduler(), data, epochs=3, lr=1e-2, optimizer=optimizer,
               generator=torch.Generator().manual_seed(0))
    for name, value in model.get_base_model().state_dict().items():  # base weights inside the LoRA layers
        plain = name.replace("base_layer.", "")
        if "lora_" not in name:
            assert torch.equal(value, before[plain]), name
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 500])
    with torch.no_grad():
        adapted = model(x, t).sample
    model.save_pretrained(tmp_path / "adapters")
    assert (tmp_path / "adapters" / "adapter_model.safetensors").stat().st_size < 200_000
    fresh = seeded_unet()
    loaded = PeftModel.from_pretrained(fresh, tmp_path / "adapters")
    merged = loaded.merge_and_unload()
    assert type(merged) is UNet2DModel
    with torch.no_grad():
        assert torch.allclose(merged(x, t).sample, adapted, atol=1e-5)
    changed = [k for k, v in merged.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(k.split(".")[-2] in {"to_q", "to_k", "to_v", "0", "conv1", "conv2"} for k in changed)
