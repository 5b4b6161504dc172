"""Dictionaries compared at matched L0 on one model (issue 28 item 6): TopK, BatchTopK, Matryoshka,
JumpReLU and a TopK transcoder, each with its spliced CE, LoRA, KL fine-tuning and both (`plan`, `run`,
`table`, `figure`, `suite`)."""
