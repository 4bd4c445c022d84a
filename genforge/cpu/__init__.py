"""CPU speed code, kept apart from the models and the loop that use it.

- isa.py: whether this CPU has native bf16, the one rule for every precision choice on CPU
- fused_gpt.py (+ .cpp): the GPT-2 blocks as one C++ op pair, for training in bf16 autocast
- attention.py: the bf16 attention core (bf16 matmuls around an fp32 softmax)
- shards.py: train.cpu_parallel=batch, one batch shard per thread
- decode.py: linear layers laid out for batch-1 decoding
- memory.py: glibc's malloc keeping freed memory between training steps
- training.py: what a CPU training run sets up (memory.py, shards.py) before its first step

Each core file reaches this package through one hook: models/gpt.py (fused_gpt.blocks, and
attention.attend handed to each CausalSelfAttention: genforge.nn sits below this package and does
not import it), train/loop.py (training.for_training), device.py and train/optim.py
(isa.native_bf16), api.py (decode.for_decoding). This package imports only torch, genforge.nn,
genforge.config and genforge.errors: nothing here sees the loop, the samplers or the CLI.
"""
