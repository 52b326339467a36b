"""The reasoning driving policy: tokenizer, scene encoder, model factory, constrained decoding, flow expert, SFT.

Modules (import what you need; nothing heavy is imported here):

- ``config``      ModelConfig, ExpertConfig, SFTConfig, EvalConfig, PolicyRunConfig (pydantic)
- ``tokenizer``   PolicyTokenizer (HF fast tokenizer built locally; Qwen2-compatible pipeline), special tokens
- ``scene``       encode_scene(scenario) -> scene words; scene_vocabulary()
- ``model``       new_policy / build_tokenizer / build_backbone / build_expert, PolicyModel, save_policy / load_policy
- ``constraints`` PhaseRules (the rule table, JSON), PhaseTracker, HFPhaseLogitsProcessor
- ``vllm_engine`` VLLMPhaseLogitsProcessor, make_llm(ckpt), sampling_params(...)
- ``generate``    prompt_ids, hf_generate, vllm_generate, decode_completion, expert_controls
- ``expert``      FlowActionExpert (flow matching behind a stop-gradient), (de)normalise_controls
- ``data``        build_example, collate (teacher-forced SFT batches)
- ``sft``         run_sft (DeepSpeed, gloo, ZeRO stage from config)
"""
