"""Write manifest-v1/: a schema-1 manifest and its files, made by the release before BLAKE3.

Run against that release's package (commit fc9677b), never the current one:
    git archive fc9677b python | tar -x -C /tmp/v1 && PYTHONPATH=/tmp/v1/python \
        python3 tests/data/make_manifest_v1.py tests/data/manifest-v1
"""

from __future__ import annotations

import gzip
import hashlib
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path

from ed_extractor.manifest import ManifestRecord, ManifestStore, schema_version

WHEN = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


def main(folder: Path) -> None:
    """Create the fixture folder: two stored files, one recorded file that is absent, history."""
    assert schema_version() == 1, "run this with the schema-1 release"
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    payloads = {
        "galaxy_1day.json.gz": gzip.compress(b'[{"id64": 1, "name": "Sol"}]\n', mtime=0),
        "systems_1week.bin": bytes(range(256)) * 16,
        "galaxy_gone.json.gz": gzip.compress(b"[]\n", mtime=0),
    }
    with ManifestStore(folder / "manifest.sqlite3") as store:
        for index, (name, data) in enumerate(payloads.items()):
            path = folder / name
            path.write_bytes(data)
            record = ManifestRecord(
                name=name,
                url=f"https://downloads.example/{name}",
                final_url=f"https://cdn.example/{name}",
                path=str(path),
                bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                regime="gzip" if name.endswith(".gz") else "binary",
                mime_type="application/gzip"
                if name.endswith(".gz")
                else "application/octet-stream",
                etag=f'"etag-{index}"' if index != 1 else None,
                last_modified="Tue, 01 Dec 2026 03:00:00 GMT",
                uncompressed_bytes=len(gzip.decompress(data)) if name.endswith(".gz") else None,
                records=1 if index == 0 else None,
                downloaded_at=WHEN,
            )
            store.put(record, elapsed_s=0.5 + index, bytes_transferred=len(data))
        store.record_attempt(
            "galaxy_1day.json.gz",
            "https://downloads.example/galaxy_1day.json.gz",
            "unchanged",
            elapsed_s=0.1,
        )
        store.record_attempt(
            "systems_1week.bin",
            "https://downloads.example/systems_1week.bin",
            "failed",
            error="HTTP 503 from https://downloads.example/systems_1week.bin",
            elapsed_s=0.2,
        )
    (folder / "galaxy_gone.json.gz").unlink()
    conn = sqlite3.connect(folder / "manifest.sqlite3")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")  # one self-contained file in the repository
    conn.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
