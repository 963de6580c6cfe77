"""The jobs ed-extractor runs: fetching dump sources (spansh_dump), later the EDDN stream."""
