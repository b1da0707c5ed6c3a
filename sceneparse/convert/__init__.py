"""Weight converters from the peers' checkpoint formats; one file per source format."""
