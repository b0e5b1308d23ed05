//! Handler tests for the REST API.
