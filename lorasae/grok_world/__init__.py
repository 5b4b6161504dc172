"""The grokking world (seed train-SAE): modular tasks, the transformers model, its training until it
groks, and `--dataset grok:<task>`. A model/task provider beside `lorasae.world`; the study is `lorasae.grok`."""
