"""Write the JSON Schemas the repository keeps in schemas/ from their pydantic definitions (a test checks that
they are in sync): ``python scripts/export_schemas.py``."""

from __future__ import annotations

from pathlib import Path

from prefkit.record import write_json_schema
from prefkit.store.manifest_model import write_json_schema as write_manifest_schema

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"

if __name__ == "__main__":
    print(f"wrote {write_json_schema(SCHEMAS / 'record.schema.json')}")
    print(f"wrote {write_manifest_schema(SCHEMAS / 'manifest.schema.json')}")
