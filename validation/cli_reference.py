"""Write docs/cli.md from the parsers: ``python -m validation.cli_reference [PATH]``."""
import sys
from pathlib import Path

from .cli import cli_reference

if __name__ == "__main__":  # pragma: no cover
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "docs" / "cli.md")
    path.write_text(cli_reference())
    print(f"wrote {path}")
