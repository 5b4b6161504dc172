"""The foundation: errors, atomic files, paths, run records, the command line, settings every layer
shares. Imports nothing else of lorasae."""
