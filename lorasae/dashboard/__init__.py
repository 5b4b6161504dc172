"""Feature dashboards (issue 29): static HTML pages of SAE latents, before and after the LoRA adapter.

`collect` (one streaming pass per model: firing counts, activation sums and histograms, top sequences;
then the context windows of the chosen latents), `ranking` (`--latents`, the change score of
`changed:N`, the overlap of top contexts), `logits` (the tokens a decoder direction pushes up and down),
`features` (the data in Neuronpedia's feature schema), `render` (the HTML), `neuronpedia` (the
upload-batch payloads of `--export neuronpedia`), `run` (`eval/dashboard/run.py` and the demo stage).
"""
