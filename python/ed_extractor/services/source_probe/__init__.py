"""Find out what a source is before committing to a download: HEAD, a 1 KiB sample, sniffing."""
