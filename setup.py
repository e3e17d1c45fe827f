"""Installs prefjax: preference-learning objectives, exact oracles and trainers in JAX."""

import setuptools

setuptools.setup(
    name="prefjax",
    version="0.1.0",
    description=(
        "Preference-learning objectives (DPO, IPO, Nash-MD, SPPO, AOT, ...) as pure JAX "
        "functions, synthetic preference bandits with exact oracles, and trainers."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    # `experiments` (the entry point and its configs) is installed too, so `python -m experiments.main`
    # works from any directory.
    packages=setuptools.find_packages(include=["prefjax", "prefjax.*", "experiments", "experiments.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.4.30",
        "flax>=0.8",
        "optax>=0.2",
        "orbax-checkpoint>=0.5",
        "numpy>=1.24",
        "matplotlib>=3.7",
        "ml_collections>=0.1.1",
        "chex>=0.1.86",
        "absl-py>=1.0",
        "scipy>=1.10",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "pytest-xdist>=3",
            "nbclient>=0.7",
            "nbformat>=5",
            "ipykernel>=6",
            "tokenizers>=0.15",
            "safetensors>=0.4",
        ],
        # Language-model data and weights: tokenizer.json files and Hugging Face safetensors checkpoints.
        "lm": [
            "tokenizers>=0.15",
            "safetensors>=0.4",
        ],
    },
)
