"""The `finetune`, `merge` and `chat` verbs (registered in genforge/cli/serving.py)."""
from __future__ import annotations


def add_finetune(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune a checkpoint (full, LoRA or partly frozen) on new data")
    p.add_argument("ckpt", help="checkpoint directory (e.g. from `genforge import hf`), or a run directory")
    p.add_argument("overrides", nargs="*", help="train.* overrides: train.max_iters=200 train.lr=3e-5")
    p.add_argument("--data", required=True,
                   help="decoder: text (file/folder), a prepared directory, or chat jsonl (messages or prompt/completion); "
                        "encoder: jsonl of {text, label}")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--method", choices=["full", "lora", "freeze"], default="full",
                   help="train every weight, LoRA adapters only, or all but the first blocks")
    p.add_argument("--lora-r", type=int, default=8, help="--method lora: rank of the adapters")
    p.add_argument("--lora-alpha", type=float, default=16.0, help="--method lora: scale (alpha / r multiplies them)")
    p.add_argument("--lora-dropout", type=float, default=0.05, help="--method lora: dropout on the adapters' input")
    p.add_argument("--target-modules", help="comma-separated Linear layer names (default c_attn,c_proj,c_fc)")
    p.add_argument("--freeze-layers", type=int, default=0, help="--method freeze: the first N blocks stay fixed")
    p.add_argument("--freeze-embeddings", action="store_true", help="--method freeze: the embeddings stay fixed")
    p.add_argument("--batch-size", type=int, default=8, help="rows (or examples) per step")
    p.add_argument("--block-size", type=int, help="decoder rows (default: the model's block_size)")
    p.add_argument("--max-len", type=int, default=128, help="encoder: tokens per input (default 128)")
    p.add_argument("--head-pool", choices=["cls", "mean"], default="cls",
                   help="encoder: a new head reads BERT's pooler on [CLS] (exports as BertForSequenceClassification; "
                        "default) or the mean of the final states (sentence-embedding models; exports without it)")
    p.add_argument("--val-data", help="held-out data (default: 10%% of --data)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of --data held out when no --val-data")
    p.add_argument("--no-pack", action="store_true", help="SFT: one example per row instead of packing")
    p.add_argument("--chat-template", help="SFT: a Jinja chat template file (default: the tokenizer's, else genforge's)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")

    def run(a):
        from genforge.finetune.run import FinetuneOptions, finetune

        targets = [t.strip() for t in a.target_modules.split(",") if t.strip()] if a.target_modules else None
        opts = FinetuneOptions(a.method, a.lora_r, a.lora_alpha, a.lora_dropout, targets, a.freeze_layers,
                               a.freeze_embeddings, a.batch_size, a.block_size, a.max_len, a.val_data, a.val_fraction,
                               not a.no_pack, a.chat_template, a.head_pool)
        ckpt = finetune(a.ckpt, a.data, a.out, opts, a.overrides, resume=a.resume, progress=not a.no_progress)
        print(f"checkpoint: {ckpt}")
        if a.method == "lora":
            print(f"adapter: {a.out}/adapter")

    p.set_defaults(func=run)


def add_merge(sub) -> None:
    p = sub.add_parser("merge", help="fold LoRA adapters into the weights (a plain checkpoint)")
    p.add_argument("ckpt", help="a LoRA checkpoint or run directory; with --adapter, the base checkpoint")
    p.add_argument("--adapter", help="a PEFT adapter directory (adapter_config.json + adapter_model.safetensors)")
    p.add_argument("--out", required=True, help="the plain checkpoint directory to write")

    def run(a):
        from genforge.finetune.merge import merge

        print(f"checkpoint: {merge(a.ckpt, a.out, a.adapter)}")

    p.set_defaults(func=run)


def add_chat(sub) -> None:
    p = sub.add_parser("chat", help="chat with a model in the terminal (history kept, replies streamed)")
    p.add_argument("ckpt", help="checkpoint directory, or a run directory (uses its latest)")
    p.add_argument("--system", help="a system message that starts the conversation")
    p.add_argument("--max-new-tokens", type=int, default=200, help="tokens per reply at most")
    p.add_argument("--temperature", type=float, default=0.7, help="sampling temperature (0: greedy)")
    p.add_argument("--top-k", type=int, help="sample among the K likeliest tokens only (default: all)")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling: the smallest set of tokens with this "
                   "much probability")
    p.add_argument("--seed", type=int, help="seed of the whole conversation, drawn from once per reply (default: random)")
    p.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, ...")
    p.add_argument("--logit-bias", metavar="ID:BIAS[,ID:BIAS]", help="add BIAS in [-100, 100] to token ID's logit")
    p.add_argument("--block", action="append", default=[], metavar="PHRASE", help="a word or phrase never to say (repeatable)")
    p.add_argument("--self-debias", action="append", default=[], metavar="PREFIX",
                   help="self-debiasing against a text describing the bias (repeatable; docs/bias.md)")
    p.add_argument("--debias-decay", type=float, default=50.0, help="--self-debias's decay constant lambda")

    def run(a):
        from genforge.finetune.chat import chat
        from genforge.sample.processors import parse_logit_bias

        controls = dict(logit_bias=parse_logit_bias(a.logit_bias) or None, blocklist=a.block,
                        self_debias=a.self_debias, debias_decay=a.debias_decay)
        chat(a.ckpt, a.system, a.max_new_tokens, a.temperature, a.top_k, a.top_p, a.seed, a.device, controls=controls)

    p.set_defaults(func=run)
