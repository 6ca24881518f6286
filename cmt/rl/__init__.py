"""RL algorithm pieces on padded (B, T) tensors: advantage estimators (gae, grpo), policy/value/KL losses
with their aggregation modes, DAPO's dynamic-sampling filter, logit helpers, and the config check that
runs before any model loads. Small registries map config names to functions (see docs/rl.md)."""
