"""SAEBench-style evaluation (SPEC §4.1): native implementations of SAEBench's core, sparse probing, SCR,
TPP, feature absorption and autointerp evals, writing SAEBench's output JSON schema."""
