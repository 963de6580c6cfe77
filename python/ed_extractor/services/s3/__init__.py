"""S3 sources (``s3://BUCKET/KEY``): the URL, signed access, probe, checksums and resume state."""
