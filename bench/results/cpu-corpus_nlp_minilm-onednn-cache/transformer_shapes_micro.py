"""(PERFLOG #47) A MiniLM-shaped random BERT (6 layers, 384 wide) alone, one torch thread, over 150
forward calls of random widths 8-128 (1,024 padded wordpieces each, as the bulk pass makes them),
twice. `python transformer_shapes_micro.py fp32|bf16 [nomkldnn]`, with or without
ONEDNN_PRIMITIVE_CACHE_CAPACITY=N in the environment; prints seconds per pass."""
import time, torch, transformers, numpy as np, sys
torch.set_num_threads(1); torch.manual_seed(0)
cfg = transformers.BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536)
m = transformers.BertModel(cfg).eval()
rng = np.random.default_rng(0)
shapes = [(int(max(1, 1024 // w)), int(w)) for w in rng.integers(8, 129, 150)]
dtype = sys.argv[1]
if len(sys.argv) > 2: torch.backends.mkldnn.enabled = False
ctx = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bf16" else torch.autocast("cpu", enabled=False)
with torch.inference_mode(), ctx:
    t = time.perf_counter()
    for rep in range(2):
        for n, w in shapes:
            m(input_ids=torch.ones((n, w), dtype=torch.long), attention_mask=torch.ones((n, w), dtype=torch.long))
        print(dtype, "pass", rep, round(time.perf_counter() - t, 2), flush=True); t = time.perf_counter()
