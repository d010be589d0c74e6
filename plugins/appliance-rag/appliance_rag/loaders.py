"""Document loaders: small, well-kept parsers only (pypdfium2, python-docx, selectolax,
charset-normalizer, stdlib csv and email). Each raises ValueError with a reason on bad input."""

from __future__ import annotations

import csv
import email
import email.policy
import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from charset_normalizer import from_bytes

from appliance import DocumentLoader, LoadedSection

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


def read_text(path: Path) -> str:
    data = path.read_bytes()
    if not data.strip():
        return ""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        best = from_bytes(data).best()
        if best is None:
            raise ValueError("not a text file (unknown encoding)") from None
        return str(best)


def _by_headings(lines: list[str], title: str) -> Iterator[LoadedSection]:
    heading, start, body = title, 1, []
    for number, line in enumerate(lines, 1):
        match = _HEADING.match(line)
        if match:
            if "".join(body).strip():
                yield LoadedSection(
                    "\n".join(body).strip(),
                    heading,
                    {"heading": heading, "lines": f"{start}-{number - 1}"},
                )
            heading, start, body = match.group(2), number, []
        else:
            body.append(line)
    if "".join(body).strip():
        yield LoadedSection(
            "\n".join(body).strip(), heading, {"heading": heading, "lines": f"{start}-{len(lines)}"}
        )


class TextLoader(DocumentLoader):
    name = "text"
    suffixes = (".txt", ".md", ".markdown", ".rst", ".text")

    def load(self, path: Path) -> Iterable[LoadedSection]:
        return list(_by_headings(read_text(path).splitlines(), path.stem))


class HtmlLoader(DocumentLoader):
    name = "html"
    suffixes = (".html", ".htm")

    def load(self, path: Path) -> Iterable[LoadedSection]:
        from selectolax.lexbor import LexborHTMLParser as HTMLParser

        tree = HTMLParser(read_text(path))
        for node in tree.css("script, style, nav, noscript"):
            node.decompose()
        title_node = tree.css_first("title")
        title = title_node.text(strip=True) if title_node else path.stem
        lines = []
        body = tree.body or tree.root
        if body is None:
            return []
        for node in body.traverse(include_text=False):
            if node.tag in ("h1", "h2", "h3", "h4"):
                lines.append("#" * int(node.tag[1]) + " " + node.text(strip=True))
            elif node.tag in ("p", "li", "td", "pre", "blockquote", "dd", "dt"):
                text = node.text(separator=" ", strip=True)
                if text:
                    lines.extend([text, ""])
        return list(_by_headings(lines, title))


class PdfLoader(DocumentLoader):
    name = "pdf"
    suffixes = (".pdf",)

    def load(self, path: Path) -> Iterable[LoadedSection]:
        import pypdfium2 as pdfium

        try:
            pdf = pdfium.PdfDocument(str(path))
        except pdfium.PdfiumError as exc:
            raise ValueError(f"not a readable PDF: {exc}") from None
        sections = []
        try:
            for index in range(len(pdf)):
                text = pdf[index].get_textpage().get_text_range().replace("\r\n", "\n").strip()
                if text:
                    sections.append(LoadedSection(text, path.stem, {"page": index + 1}))
        finally:
            pdf.close()
        return sections


class DocxLoader(DocumentLoader):
    name = "docx"
    suffixes = (".docx",)

    def load(self, path: Path) -> Iterable[LoadedSection]:
        import docx

        try:
            document = docx.Document(str(path))
        except Exception as exc:
            raise ValueError(f"not a readable DOCX: {exc}") from None
        lines = []
        for paragraph in document.paragraphs:
            style = paragraph.style.name if paragraph.style is not None else ""
            level = re.match(r"Heading (\d)", style or "")
            text = paragraph.text.strip()
            if level and text:
                lines.append("#" * int(level.group(1)) + " " + text)
            elif text:
                lines.extend([text, ""])
        title = document.core_properties.title or path.stem
        return list(_by_headings(lines, title))


class CsvLoader(DocumentLoader):
    name = "csv"
    suffixes = (".csv",)
    rows_per_section = 20

    def load(self, path: Path) -> Iterable[LoadedSection]:
        rows = list(csv.reader(io.StringIO(read_text(path))))
        if not rows:
            return []
        header, body = rows[0], rows[1:]
        sections = []
        for start in range(0, len(body), self.rows_per_section):
            block = body[start : start + self.rows_per_section]
            text = "\n".join(
                "; ".join(f"{h}: {v}" for h, v in zip(header, row, strict=False)) for row in block
            )
            sections.append(
                LoadedSection(text, path.stem, {"rows": f"{start + 2}-{start + 1 + len(block)}"})
            )
        return sections


class EmailLoader(DocumentLoader):
    name = "eml"
    suffixes = (".eml",)

    def load(self, path: Path) -> Iterable[LoadedSection]:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        subject = str(message.get("subject", path.stem))
        part = message.get_body(preferencelist=("plain", "html"))
        if part is None:
            raise ValueError("the e-mail has no text body")
        text = part.get_content()
        if part.get_content_type() == "text/html":
            from selectolax.lexbor import LexborHTMLParser as HTMLParser

            text = HTMLParser(text).text(separator="\n")
        sender = str(message.get("from", ""))
        return [LoadedSection(text.strip(), subject, {"from": sender})]


LOADERS: tuple[DocumentLoader, ...] = (
    TextLoader(),
    HtmlLoader(),
    PdfLoader(),
    DocxLoader(),
    CsvLoader(),
    EmailLoader(),
)
