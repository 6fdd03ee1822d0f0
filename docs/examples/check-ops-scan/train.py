import os

import torch
import torch.distributed as dist
from flash_attn import flash_attn_func
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, HfArgumentParser, Trainer, TrainingArguments

backend = "nccl"


def attention(q, k, v):
    if q.device.type == "cuda":
        return flash_attn_func(q, k, v, causal=True)
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)


def main():
    (args,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses()
    dist.init_process_group(backend=backend)
    torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
    model = AutoModelForCausalLM.from_pretrained("./llama", quantization_config=quant)
    model = torch.compile(model)
    Trainer(model=model, args=args).train()


if __name__ == "__main__":
    main()
