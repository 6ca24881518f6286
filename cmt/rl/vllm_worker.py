"""Methods added to each vLLM worker (``worker_extension_cls``) for the RL weight sync.

vLLM reloads weights in place with its layerwise reload (``reload_weights``), which re-runs each layer's
post-load processing. A tied LM head shares the embedding's weight and is not loaded on its own, so it is
skipped; on a CPU it keeps a packed copy of the *old* weight for its matrix product, and the engine would
sample from the new embedding but the old output layer (tests/vllm_suite/test_vllm_rollouts.py catches this
in the log-probs). :meth:`WeightSync.sync_weights` re-packs it after the reload.
"""

from __future__ import annotations


class WeightSync:
    """Mixed into vLLM's worker class: ``self`` is the worker (``self.model_runner`` holds the model)."""

    def sync_weights(self, folder: str) -> None:
        """Load the safetensors weights in ``folder`` into the running model, in place."""
        self.model_runner.reload_weights(weights_path=folder)
        model = self.model_runner.get_model()
        head = getattr(model, "lm_head", None)
        embedding = getattr(getattr(model, "model", None), "embed_tokens", None)
        if head is not None and embedding is not None and getattr(head, "weight", None) is getattr(
                embedding, "weight", False):
            head.quant_method.process_weights_after_loading(head)
