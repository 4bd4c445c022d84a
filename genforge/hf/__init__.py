"""The Hugging Face layout: directories of config.json, model.safetensors (or shards and their
index), tokenizer.json, tokenizer_config.json and generation_config.json, in and out."""
