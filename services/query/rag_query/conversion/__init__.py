"""Documents given as files (PDF, HTML, DOCX, text) turned into text with headings and pages,
in a sandboxed process: `media` reads what a file is, `converters` reads it, `sandbox` runs
the reading where a hostile file can harm nothing but itself."""
