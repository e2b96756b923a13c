"""The offline toy world: a synthetic arithmetic task, a shared character tokenizer, tiny Llama
students and teachers trained on CPU, and the demo config that `opd-engine toy build` writes."""
