"""JSB Chorales: genforge's music/jsb GPT vs the locuslab TCN's own JSB recipe in the same CPU time.

    python bench/jsb_vs_tcn.py --jsb PATH/TO/jsb-chorales [--minutes 15] [--threads 1] [--repeats 1]
                               [--parallel] [--tcn-src PATH/TO/TCN] [--parity-only] [key=value ...]

Both train on JSB's 229 training chorales (quarter-note frames; genforge.data.jsb reads the JSON,
whose pieces equal the TCN repository's JSB_Chorales.mat frame for frame), pick their weights on
the 76 validation chorales, and are scored once on the 77 test chorales: NLL per frame in nats (the
sum of 88 Bernoulli NLLs per frame for the TCN; the product of the frame's token probabilities
for the GPT, genforge/eval/jsb_nll.py), the first frame of each piece excluded, frame-weighted.
Each arm trains for --minutes of this process's CPU time (time.process_time, one torch thread,
the validation passes of its recipe included; the final test scoring is not counted). With
--repeats > 1 the order alternates (A B, B A, ...) and seeds advance; medians are reported.
--parallel runs the two arms of a repeat at the same time in two processes (each still counts
only its own CPU time), which halves the wall time and gives both the same machine load.

genforge: `genforge train music/jsb` through the one training loop with train.max_minutes=M and
train.budget_clock=cpu (the cosine schedule follows the budget), train.early_stop=0 (the whole
budget is used), train.keep_best: the checkpoint of the lowest validation loss is scored.
Reference: the TCN of Bai, Kolter & Koltun 2018 (github.com/locuslab/TCN, TCN/tcn.py and
TCN/poly_music/{model,music_test}.py, commit 2f8c2b8), re-implemented below as published, with
music_test.py's defaults: 4 levels of 150 channels, kernel 5, dropout 0.25, weight-normalised
causal convolutions, a sigmoid read-out in float64; Adam at lr 1e-3, one chorale per step,
shuffled each epoch, 100 epochs at most; after epoch 10 the learning rate is divided by 10 whenever the validation
NLL exceeds the largest of the previous three; the best-validation weights are scored. As in the
original, clip_grad_norm_(0.2) is called before backward() (so it clips nothing) and
init_weights draws into weight-norm's recomputed `weight` (so it changes nothing but the random
stream). Deviations: numpy's shuffle is seeded (the original leaves it unseeded) and the
original's per-epoch test evaluation (printed only) is skipped.
--tcn-src (a checkout of locuslab/TCN; also $TCN_SRC): first checks that this re-implementation
gives the original's numbers: the same parameters after the same seed, and the original script
(music_test.py --data JSB --epochs 1, numpy seeded) printing the same validation loss as one epoch
of the re-implementation. Without it the check is skipped, saying so.

Published: TCN 8.10 (Bai et al. 2018), RNN-NADE 5.56 (Boulanger-Lewandowski et al. 2012); the
TCN's defaults measured 8.44 on this kind of machine. Last line: nll_ours=... nll_ref=... cpu_s=...
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.utils import weight_norm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from genforge.cpu import isa
from genforge.data import jsb

RECIPE = "music/jsb"
TCN_SEED, TCN_EPOCHS = 1111, 100  # music_test.py's defaults: its recipe ends after 100 epochs


# ---- the reference: locuslab/TCN, TCN/tcn.py and TCN/poly_music/model.py, as published ----------

class Chomp1d(nn.Module):
    def __init__(self, chomp_size):
        super().__init__()
        self.chomp_size = chomp_size

    def forward(self, x):
        return x[:, :, :-self.chomp_size].contiguous()  # causal: drop the right padding


class TemporalBlock(nn.Module):
    def __init__(self, n_inputs, n_outputs, kernel_size, stride, dilation, padding, dropout=0.2):
        super().__init__()
        self.conv1 = weight_norm(nn.Conv1d(n_inputs, n_outputs, kernel_size,
                                           stride=stride, padding=padding, dilation=dilation))
        self.chomp1 = Chomp1d(padding)
        self.relu1 = nn.ReLU()
        self.dropout1 = nn.Dropout(dropout)
        self.conv2 = weight_norm(nn.Conv1d(n_outputs, n_outputs, kernel_size,
                                           stride=stride, padding=padding, dilation=dilation))
        self.chomp2 = Chomp1d(padding)
        self.relu2 = nn.ReLU()
        self.dropout2 = nn.Dropout(dropout)
        self.net = nn.Sequential(self.conv1, self.chomp1, self.relu1, self.dropout1,
                                 self.conv2, self.chomp2, self.relu2, self.dropout2)
        self.downsample = nn.Conv1d(n_inputs, n_outputs, 1) if n_inputs != n_outputs else None
        self.relu = nn.ReLU()
        # as the original: draws into weight_norm's recomputed `weight`, which the next forward
        # overwrites from g and v; it only advances the random stream
        self.conv1.weight.data.normal_(0, 0.01)
        self.conv2.weight.data.normal_(0, 0.01)
        if self.downsample is not None:
            self.downsample.weight.data.normal_(0, 0.01)

    def forward(self, x):
        out = self.net(x)
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(out + res)


class TCN(nn.Module):
    """TemporalConvNet(88, [nhid] * levels, ksize, dropout) -> Linear -> sigmoid (float64)."""

    def __init__(self, input_size=88, output_size=88, num_channels=(150,) * 4, kernel_size=5, dropout=0.25):
        super().__init__()
        layers = []
        for i, out_channels in enumerate(num_channels):
            dilation = 2 ** i
            in_channels = input_size if i == 0 else num_channels[i - 1]
            layers.append(TemporalBlock(in_channels, out_channels, kernel_size, stride=1, dilation=dilation,
                                        padding=(kernel_size - 1) * dilation, dropout=dropout))
        self.tcn = nn.Module()
        self.tcn.network = nn.Sequential(*layers)  # the original's attribute path: tcn.network.N
        self.linear = nn.Linear(num_channels[-1], output_size)
        self.sig = nn.Sigmoid()

    def forward(self, x):  # x (N, L, 88) -> probabilities (N, L, 88), float64
        output = self.tcn.network(x.transpose(1, 2)).transpose(1, 2)
        return self.sig(self.linear(output).double())


def tcn_loss(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """music_test.py's loss: the summed Bernoulli NLL of the frames, written as its trace."""
    return -torch.trace(torch.matmul(y, torch.log(output).float().t()) +
                        torch.matmul((1 - y), torch.log(1 - output).float().t()))


def tcn_evaluate(model: TCN, pieces: list[torch.Tensor]) -> float:
    """music_test.py's evaluate: summed NLL over the pieces' frames 1.. / frames scored."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for line in pieces:
            output = model(line[:-1].unsqueeze(0)).squeeze(0)
            total += tcn_loss(output, line[1:]).item()
            count += output.size(0)
    return total / count


class TCNRecipe:
    """music_test.py's training, one chorale per step, resumable at any chorale."""

    def __init__(self, train: list[torch.Tensor], valid: list[torch.Tensor], seed: int = TCN_SEED):
        torch.manual_seed(seed)
        self.model = TCN()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.lr, self.train, self.valid = 1e-3, train, valid
        self.rng = np.random.RandomState(seed)  # the original shuffles with numpy's unseeded global state
        self.order: list[int] = []
        self.epoch, self.vlosses, self.best, self.best_state = 0, [], float("inf"), None

    def step(self) -> None:
        """Train on the next chorale (starting an epoch when the last one ended)."""
        if not self.order:
            self.epoch += 1
            idx = np.arange(len(self.train), dtype="int32")
            self.rng.shuffle(idx)
            self.order = list(idx)
            self.model.train()
        line = self.train[self.order.pop(0)]
        x, y = line[:-1], line[1:]
        self.optimizer.zero_grad()
        output = self.model(x.unsqueeze(0)).squeeze(0)
        loss = tcn_loss(output, y)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 0.2)  # where the original calls it: before backward
        loss.backward()
        self.optimizer.step()
        if not self.order:
            self.end_epoch()

    def end_epoch(self) -> float:
        """Validation, best weights, and the learning-rate rule of music_test.py's main loop."""
        vloss = tcn_evaluate(self.model, self.valid)
        self.model.train()
        if vloss < self.best:
            self.best, self.best_state = vloss, copy.deepcopy(self.model.state_dict())
        if self.epoch > 10 and vloss > max(self.vlosses[-3:]):
            self.lr /= 10
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr
        self.vlosses.append(vloss)
        return vloss

    def best_model(self) -> TCN:
        model = copy.deepcopy(self.model)
        if self.best_state is not None:
            model.load_state_dict(self.best_state)
        return model


def rolls(pieces: list) -> list[torch.Tensor]:
    return [torch.from_numpy(jsb.frame_bits(p)) for p in pieces]


def train_ref(data: dict, minutes: float, seed: int) -> dict:
    t0 = time.process_time()
    recipe = TCNRecipe(rolls(data["train"]), rolls(data["valid"]), seed)
    steps = 0
    while time.process_time() - t0 < 60 * minutes and (recipe.epoch < TCN_EPOCHS or recipe.order):
        recipe.step()
        steps += 1
    if recipe.order:  # the budget ended inside an epoch: that epoch's weights get their validation too
        recipe.end_epoch()
    cpu = time.process_time() - t0
    test = tcn_evaluate(recipe.best_model(), rolls(data["test"]))
    return {"nll": test, "val": recipe.best, "cpu": cpu, "what": f"{recipe.epoch} epochs ({steps} chorales)"}


# ---- genforge ---------------------------------------------------------------------------------

def train_ours(tokens: Path, work: Path, minutes: float, threads: int, seed: int, overrides: list[str]) -> dict:
    from genforge.eval.jsb_nll import evaluate_jsb, jsb_nll, jsb_pieces
    from genforge.run_config import load_config
    from genforge.train.run import run

    out = work / f"ours-{seed}"
    cfg = load_config(RECIPE, [f"data.path={tokens}", f"train.max_minutes={minutes}", "train.budget_clock=cpu",
                               "train.max_iters=100000000", "train.early_stop=0", "train.keep_best=true",
                               f"train.threads={threads}", "train.device=cpu", f"train.seed={seed}",
                               f"train.out_dir={out}", *overrides])
    t0 = time.process_time()
    best = run(cfg, progress=False)
    cpu = time.process_time() - t0
    import genforge.checkpoint as ckpt_io

    val = jsb_nll(ckpt_io.load(best).model, jsb_pieces(tokens, "val"))["jsb_nll"]
    test = evaluate_jsb(best, str(tokens), "test", "cpu")["jsb_nll"]
    return {"nll": test, "val": val, "cpu": cpu, "what": f"best {best.name}"}


# ---- parity with the original ---------------------------------------------------------------

def parity(src: Path, data: dict) -> None:
    """The original's model and script against this file's: parameters after the same seed, and
    the validation loss one epoch of music_test.py prints."""
    poly = src / "TCN" / "poly_music"
    if not (poly / "music_test.py").is_file():
        raise SystemExit(f"--tcn-src {src}: no TCN/poly_music/music_test.py there (a checkout of locuslab/TCN)")
    sys.path.insert(0, str(src))
    from TCN.poly_music.model import TCN as Original

    torch.manual_seed(TCN_SEED)
    theirs = Original(88, 88, [150] * 4, 5, dropout=0.25).state_dict()
    torch.manual_seed(TCN_SEED)
    ours = TCN().state_dict()
    same = list(theirs) == list(ours) and all(torch.equal(theirs[k], ours[k]) for k in theirs)
    print(f"parity: parameters after torch.manual_seed({TCN_SEED}): {'identical' if same else 'DIFFERENT'} "
          f"({len(ours)} tensors)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:  # the script writes its model file into its directory
        (Path(tmp) / "mdata").mkdir()
        shutil.copy(poly / "mdata" / "JSB_Chorales.mat", Path(tmp) / "mdata" / "JSB_Chorales.mat")
        code = (f"import sys, runpy, numpy, torch; torch.set_num_threads(1); numpy.random.seed({TCN_SEED}); "
                "sys.argv = ['music_test.py', '--data', 'JSB', '--epochs', '1', '--cuda']; "
                f"runpy.run_path({str(poly / 'music_test.py')!r}, run_name='__main__')")
        env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp, env=env, capture_output=True, text=True)
    found = re.search(r"Validation loss: ([0-9.]+)", done.stdout)
    if not found:
        raise SystemExit(f"parity: the original script printed no validation loss:\n{done.stdout}\n{done.stderr[-2000:]}")
    recipe = TCNRecipe(rolls(data["train"]), rolls(data["valid"]), TCN_SEED)
    for _ in range(len(data["train"])):  # the epoch's last chorale runs its validation
        recipe.step()
    mine = recipe.vlosses[0]
    print(f"parity: one epoch of music_test.py --data JSB: validation loss {found.group(1)} (original) vs "
          f"{mine:.5f} (this file) -> {'same' if f'{mine:.5f}' == found.group(1) else 'DIFFERENT'}", flush=True)


def run_parallel(args, work: Path, r: int, order: tuple[str, str]) -> dict[str, dict]:
    """Both arms of repeat r at once, each in its own process (its own process CPU clock)."""
    base = [sys.executable, __file__, "--jsb", args.jsb, "--minutes", str(args.minutes), "--threads", str(args.threads),
            "--seed", str(args.seed), "--work", str(work), "--repeat", str(r)]
    procs = {arm: subprocess.Popen([*base, "--arm", arm, *args.overrides], stdout=subprocess.PIPE, text=True)
             for arm in order}
    out = {}
    for arm, proc in procs.items():
        text, _ = proc.communicate()
        found = [line for line in text.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not found:
            raise SystemExit(f"the {arm} arm failed (exit {proc.returncode}):\n{text[-3000:]}")
        out[arm] = json.loads(found[-1].removeprefix("RESULT "))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jsb", default=os.environ.get("JSB_CHORALES", ""), help="the JSB JSON or its folder ($JSB_CHORALES)")
    ap.add_argument("--minutes", type=float, default=15.0, help="CPU minutes of training per arm")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1, help="pairs of runs, the order alternating")
    ap.add_argument("--seed", type=int, default=1337, help="genforge's train.seed (the TCN's: 1111), +1 per repeat")
    ap.add_argument("--tcn-src", default=os.environ.get("TCN_SRC", ""), help="a checkout of locuslab/TCN ($TCN_SRC)")
    ap.add_argument("--parity-only", action="store_true", help="run the parity check with the original, nothing else")
    ap.add_argument("--work", help="where the token data and genforge's runs go (default: a temporary folder)")
    ap.add_argument("--parallel", action="store_true",
                    help="run the two arms at the same time, each in a process of its own (one thread each)")
    ap.add_argument("--arm", choices=["ours", "ref"], help=argparse.SUPPRESS)  # one arm, for --parallel
    ap.add_argument("--repeat", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="genforge recipe overrides, e.g. model.dropout=0.2")
    args = ap.parse_args()
    if not args.jsb:
        raise SystemExit("--jsb PATH: the JSB Chorales JSON (jsb-chorales-quarter.json) or its folder is required")
    torch.set_num_threads(args.threads)
    data = jsb.load_jsb(args.jsb)
    print(f"{isa.describe()}; torch threads {args.threads}; genforge {RECIPE} (train.dtype auto), "
          f"TCN in float32 with a float64 read-out as written; {args.minutes:g} CPU-minutes per arm", flush=True)
    print("data: " + ", ".join(f"{k} {len(v)} chorales / {sum(map(len, v))} frames" for k, v in data.items()), flush=True)
    if args.arm:
        pass
    elif args.tcn_src:
        parity(Path(args.tcn_src), data)
    else:
        print("parity: skipped (no --tcn-src / $TCN_SRC checkout of locuslab/TCN to compare with)", flush=True)
    if args.parity_only:
        return
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="jsb_vs_tcn-"))
    tokens = work / "jsb-tokens"
    if args.arm:  # one arm of one repeat, in a process of its own (--parallel): its result as JSON
        r = args.repeat
        res = (train_ours(tokens, work, args.minutes, args.threads, args.seed + r, args.overrides) if args.arm == "ours"
               else train_ref(data, args.minutes, TCN_SEED + r))
        print("RESULT " + json.dumps(res), flush=True)
        return
    jsb.prepare_jsb(args.jsb, tokens)
    results = {"ours": [], "ref": []}
    for r in range(args.repeats):
        order = ("ours", "ref") if r % 2 == 0 else ("ref", "ours")
        done = (run_parallel(args, work, r, order) if args.parallel else
                {arm: train_ours(tokens, work, args.minutes, args.threads, args.seed + r, args.overrides) if arm == "ours"
                 else train_ref(data, args.minutes, TCN_SEED + r) for arm in order})
        for arm in order:
            res = done[arm]
            results[arm].append(res)
            print(f"repeat {r + 1} {arm}: test NLL/frame {res['nll']:.4f}, validation {res['val']:.4f}, "
                  f"{res['cpu']:.0f} CPU s, {res['what']}", flush=True)
    med = {arm: statistics.median(x["nll"] for x in rs) for arm, rs in results.items()}
    cpu = max(x["cpu"] for rs in results.values() for x in rs)
    print("published: TCN 8.10, LSTM 8.45, GRU 8.43 (Bai et al. 2018); RNN-NADE 5.56 (Boulanger-Lewandowski 2012)")
    print(f"nll_ours={med['ours']:.4f} nll_ref={med['ref']:.4f} cpu_s={cpu:.0f}")


if __name__ == "__main__":
    main()
