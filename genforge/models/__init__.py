"""Model families: plain nn.Modules, one file per family (an XConfig dataclass and the module),
with its Hugging Face mapping beside it where one exists. genforge/families.py is their table."""
