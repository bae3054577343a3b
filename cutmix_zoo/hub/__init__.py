"""Where weights come from and where they go: the caches, the Hugging Face Hub, the original release and its
conversion to safetensors, exported Hub folders and their model cards."""
