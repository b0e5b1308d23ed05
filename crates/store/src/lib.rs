//! trove-store: bare repositories on disk and the metadata database.
