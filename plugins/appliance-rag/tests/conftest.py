"""Small real documents written by the tests, in every supported format (fixture `corpus`)."""

from __future__ import annotations

from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import pytest


def minimal_pdf(pages: list[str]) -> bytes:
    """A valid PDF with one line of Helvetica text per page (offsets computed, xref exact)."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    font_id = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def write_corpus(folder: Path) -> dict[str, Path]:
    import docx

    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "md": folder / "vpn.md",
        "txt": folder / "printers.txt",
        "html": folder / "wifi.html",
        "pdf": folder / "holidays.pdf",
        "docx": folder / "onboarding.docx",
        "csv": folder / "phones.csv",
        "eml": folder / "backup.eml",
    }
    files["md"].write_text(
        "# VPN\n\nConnect with the client named TunnelBear7.\n\n"
        "## Passwords\n\nThe VPN password rotates every 90 days.\n"
    )
    files["txt"].write_text(
        "The second-floor printer is called Magpie.\n\nToner is in room 204.\n", encoding="latin-1"
    )
    files["html"].write_text(
        "<html><head><title>Wi-Fi</title></head><body><h1>Guest Wi-Fi</h1>"
        "<p>The guest network is Harbour-Guest; the key is on the fridge.</p>"
        "<script>var x = 1;</script></body></html>"
    )
    files["pdf"].write_bytes(
        minimal_pdf(["Office closes on 24 December.", "Reopens on 2 January after the holidays."])
    )
    document = docx.Document()
    document.add_heading("First day", level=1)
    document.add_paragraph("New staff collect their badge from reception on floor zero.")
    document.save(str(files["docx"]))
    files["csv"].write_text("name,extension\nHelpdesk,4357\nFacilities,3310\n")
    message = EmailMessage()
    message["Subject"] = "Nightly backup"
    message["From"] = "it@example.org"
    message.set_content("Backups run at 02:00 to the NAS called Vault.")
    files["eml"].write_bytes(bytes(message))
    return files


@pytest.fixture
def corpus() -> Callable[[Path], dict[str, Path]]:
    return write_corpus
