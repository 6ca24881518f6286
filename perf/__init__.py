"""Side-by-side performance harness: our stages against their best-known peers, one command, ratios.

``python -m perf all`` measures, on one model shape with random weights (or the bundled tiny model):

1. SFT throughput (non-padding tokens/s, peak RSS): `cmt.modules.sft` under Lightning vs TRL's SFTTrainer;
2. one RL step (rl=grpo, outcome-only reward): `cmt.modules.rl.RLModule` vs TRL's GRPOTrainer;
3. the bare parts of that step (one HF ``generate`` + one forward/backward) as the limit our step is held to;
   with vLLM installed, 2. and 3. again with rollouts from a colocated vLLM engine (``rl.rollout=vllm``;
   benches rl_vllm and limit_vllm: the bare parts are then one vLLM generate + forward/backward + weight sync);
4. eval problems/s and answer agreement: `cmt.eval.evaluate` vs lm-evaluation-harness (hf backend, gsm8k);
5. CoMT vs CoT: tokens per training example and SFT time per epoch on the same questions.

Every side runs in its own subprocess (``python -m perf worker ...``), so peak memory is its own and one
side's imports or caches never help the other. The peers (trl, lm-eval) are optional: ``pip install -e
".[perf]"``; without them the harness says so in one line and still measures our side. See perf/README.md.

Apart from the table: ``python -m perf.teacher_client`` measures the OpenAI-compatible teacher client and its
cache against the loopback echo server (perf/README.md, "The teacher client").
"""
