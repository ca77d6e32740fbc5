"""Console entry point of onnx-lineage: the typer application and nothing else."""

from onnx_lineage.cli import app, main

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
