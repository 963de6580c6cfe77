"""The jobs ed-extractor runs: dump sources (spansh_dump), API dumps, the EDDN stream, verify."""
