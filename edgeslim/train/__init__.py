"""Model zoo, training and fine-tuning (needs the `toolchain` extra)."""
