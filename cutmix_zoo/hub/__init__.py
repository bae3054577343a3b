"""Where weights come from and where they go: the caches, the Hugging Face Hub, the original release and its
conversion to safetensors, exported Hub folders and their model cards.

Imports among these modules run one way: ``network`` and ``cache`` at the bottom; ``convert`` (checkpoints to checked
safetensors); ``huggingface`` and ``original`` (the two download sources); ``source`` (where a load's weights come
from, decided with no network call); ``fetch`` (fetching what a source names) on top; ``export`` and ``cards`` beside.
"""
