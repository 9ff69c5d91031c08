"""Print the command of one of README's markers (``<!-- test-command -->`` or ``<!-- run-command -->``):
the last line of the ```bash block that follows the marker. CI runs it as written."""

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_command(marker: str, text: str | None = None) -> str:
    text = README.read_text() if text is None else text
    found = re.search(rf"<!-- {re.escape(marker)} -->\s*```bash\n(.+?)\n```", text, re.S)
    if not found:
        raise SystemExit(f"README.md has no <!-- {marker} --> marker followed by a ```bash block")
    line = found.group(1).strip().splitlines()[-1]
    return line.split("  #", 1)[0].strip()  # a trailing comment is not part of the command


if __name__ == "__main__":
    print(readme_command(sys.argv[1] if len(sys.argv) > 1 else "test-command"))
