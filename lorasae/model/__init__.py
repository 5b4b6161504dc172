"""The language model: which one (`load`), its defaults (`defaults`), the paper's shapes (`paper_shapes`),
its inputs (`data`), the residual hooks (`hooks`), the one CE (`ce`), the prefix reuse (`prefix`) and saved
adapters loaded onto it (`adapters`)."""
