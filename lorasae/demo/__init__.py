"""`make demo` (`python -m lorasae.demo`): every experiment of the paper on the built-in world. `main` runs
the stages (`stages`), the eval stages (`evals`), the result sections (`sections`), the claims against
the paper (`claims`) and the results page and README block (`readme`)."""
